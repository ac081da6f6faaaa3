//! The probe's page allocator over its free RAM, as the balloon driver needs it: 4 KiB frames from a
//! fixed window of physical memory, each free, in use, or held by the balloon (given to the host).
//!
//! Frames are handed out lowest first, so a working set touched from the bottom of the pool (the
//! `touch_mib=` option) is what an inflating balloon takes first; deflating gives back the highest
//! held frames. Two bitmaps (free, held) of `W` words cover `64 * W` frames from `base_pfn`;
//! search hints keep allocation and release near O(1) amortised. Pure bookkeeping, host-tested.

/// One page frame number (4 KiB frames).
pub type Pfn = u64;

/// The pool.
pub struct PagePool<const W: usize> {
    base_pfn: Pfn,
    free: [u64; W],
    held: [u64; W],
    free_count: u64,
    held_count: u64,
    /// No free frame in the words below this one.
    free_hint: usize,
    /// No held frame in this word or above.
    held_top: usize,
}

impl<const W: usize> PagePool<W> {
    /// An empty pool whose first frame is `base_pfn`.
    pub const fn new(base_pfn: Pfn) -> Self {
        Self {
            base_pfn,
            free: [0; W],
            held: [0; W],
            free_count: 0,
            held_count: 0,
            free_hint: 0,
            held_top: 0,
        }
    }

    /// Frames the bitmaps can cover.
    pub const fn capacity() -> u64 {
        64 * W as u64
    }

    fn index(&self, pfn: Pfn) -> Option<(usize, u64)> {
        let i = pfn.checked_sub(self.base_pfn)?;
        if i >= Self::capacity() {
            return None;
        }
        Some(((i / 64) as usize, 1u64 << (i % 64)))
    }

    /// Adds the frames `[start, end)` as free (the part outside the pool's window is ignored);
    /// returns how many were added.
    pub fn add_free(&mut self, start: Pfn, end: Pfn) -> u64 {
        let mut n = 0;
        let lo = start.max(self.base_pfn);
        let hi = end.min(self.base_pfn.saturating_add(Self::capacity()));
        let mut pfn = lo;
        while pfn < hi {
            if let Some((w, bit)) = self.index(pfn) {
                if (self.free[w] | self.held[w]) & bit == 0 {
                    self.free[w] |= bit;
                    n += 1;
                }
            }
            pfn += 1;
        }
        self.free_count += n;
        self.free_hint = 0;
        n
    }

    /// Free frames.
    pub fn free_pages(&self) -> u64 {
        self.free_count
    }

    /// Frames held by the balloon.
    pub fn held_pages(&self) -> u64 {
        self.held_count
    }

    /// Takes the lowest free frame for the balloon.
    pub fn hold_lowest(&mut self) -> Option<Pfn> {
        let w = (self.free_hint..W).find(|&w| self.free[w] != 0)?;
        self.free_hint = w;
        let bit = self.free[w].trailing_zeros() as u64;
        self.free[w] &= !(1 << bit);
        self.held[w] |= 1 << bit;
        self.free_count -= 1;
        self.held_count += 1;
        self.held_top = self.held_top.max(w + 1);
        Some(self.base_pfn + w as u64 * 64 + bit)
    }

    /// Gives the highest held frame back to the free frames.
    pub fn release_highest(&mut self) -> Option<Pfn> {
        let top = self.held_top.min(W);
        let Some(w) = (0..top).rev().find(|&w| self.held[w] != 0) else {
            self.held_top = 0;
            return None;
        };
        self.held_top = w + 1;
        let bit = 63 - self.held[w].leading_zeros() as u64;
        self.held[w] &= !(1 << bit);
        self.free[w] |= 1 << bit;
        self.held_count -= 1;
        self.free_count += 1;
        self.free_hint = self.free_hint.min(w);
        Some(self.base_pfn + w as u64 * 64 + bit)
    }

    /// Whether `pfn` is held by the balloon.
    pub fn is_held(&self, pfn: Pfn) -> bool {
        self.index(pfn)
            .is_some_and(|(w, bit)| self.held[w] & bit != 0)
    }

    /// The lowest `n` free frames, ascending (what a working set uses).
    pub fn lowest_free(&self, n: u64) -> impl Iterator<Item = Pfn> + '_ {
        (0..W)
            .flat_map(move |w| {
                let bits = self.free[w];
                (0..64u64)
                    .filter(move |b| bits & (1 << b) != 0)
                    .map(move |b| self.base_pfn + w as u64 * 64 + b)
            })
            .take(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_lowest_first_and_releases_highest_first() {
        let mut p: PagePool<4> = PagePool::new(100);
        assert_eq!(PagePool::<4>::capacity(), 256);
        // Partly outside the window on both sides.
        assert_eq!(p.add_free(90, 110), 10);
        assert_eq!(p.add_free(300, 400), 56);
        assert_eq!(p.add_free(105, 106), 0, "already free");
        assert_eq!(p.free_pages(), 66);
        assert_eq!(p.hold_lowest(), Some(100));
        assert_eq!(p.hold_lowest(), Some(101));
        assert!(p.is_held(100) && !p.is_held(102) && !p.is_held(5));
        assert_eq!(p.held_pages(), 2);
        let low: Vec<Pfn> = p.lowest_free(3).collect();
        assert_eq!(low, [102, 103, 104]);
        assert_eq!(p.release_highest(), Some(101));
        assert_eq!(p.hold_lowest(), Some(101));
        for _ in 0..64 {
            p.hold_lowest().unwrap();
        }
        assert_eq!(p.hold_lowest(), None, "pool exhausted");
        assert_eq!(p.free_pages(), 0);
        assert_eq!(p.held_pages(), 66);
        assert_eq!(p.release_highest(), Some(355));
        assert_eq!(p.lowest_free(10).collect::<Vec<_>>(), [355]);
        while p.release_highest().is_some() {}
        assert_eq!((p.free_pages(), p.held_pages()), (66, 0));
        assert_eq!(p.add_free(0, u64::MAX), 190, "the rest of the window");
    }
}
