//! The hook table behind the probe's shared event loop: long-running scenarios and drivers register
//! a function that the loop calls after every wake-up (an interrupt, the safety-net timer, or a
//! poll); any hook can end the loop. Pure and bounded, host-tested; the binary's `event_loop`
//! module owns the sources (console input, power button, interrupts) and the sleeping.

/// What a hook wants after it ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep looping.
    Continue,
    /// End the loop (after every hook of this round ran).
    Stop,
}

/// One registered hook over the loop's context `C`.
pub struct Hook<C> {
    /// Name (for error reports).
    pub name: &'static str,
    /// Called once per round.
    pub run: fn(&mut C) -> Flow,
}

impl<C> Clone for Hook<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Hook<C> {}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Up to `N` hooks, called in registration order.
pub struct Hooks<C, const N: usize> {
    list: [Option<Hook<C>>; N],
    len: usize,
}

impl<C, const N: usize> Default for Hooks<C, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, const N: usize> Hooks<C, N> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            list: [None; N],
            len: 0,
        }
    }

    /// Adds a hook.
    pub fn register(&mut self, name: &'static str, run: fn(&mut C) -> Flow) -> Result<(), Full> {
        let slot = self.list.get_mut(self.len).ok_or(Full)?;
        *slot = Some(Hook { name, run });
        self.len += 1;
        Ok(())
    }

    /// The registered hooks' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.list[..self.len].iter().flatten().map(|h| h.name)
    }

    /// Runs every hook once; [`Flow::Stop`] if any asked to stop.
    pub fn dispatch(&self, ctx: &mut C) -> Flow {
        let mut flow = Flow::Continue;
        for h in self.list[..self.len].iter().flatten() {
            if (h.run)(ctx) == Flow::Stop {
                flow = Flow::Stop;
            }
        }
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Ctx {
        calls: [u32; 3],
        order: u32,
        seen_order: [u32; 3],
        stop_at: u32,
    }

    fn a(c: &mut Ctx) -> Flow {
        c.calls[0] += 1;
        c.order += 1;
        c.seen_order[0] = c.order;
        Flow::Continue
    }

    fn b(c: &mut Ctx) -> Flow {
        c.calls[1] += 1;
        c.order += 1;
        c.seen_order[1] = c.order;
        if c.calls[1] == c.stop_at {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    fn last(c: &mut Ctx) -> Flow {
        c.calls[2] += 1;
        c.order += 1;
        c.seen_order[2] = c.order;
        Flow::Continue
    }

    #[test]
    fn hooks_run_in_order_and_any_can_stop_the_loop() {
        let mut h: Hooks<Ctx, 3> = Hooks::new();
        h.register("a", a).unwrap();
        h.register("b", b).unwrap();
        h.register("last", last).unwrap();
        assert_eq!(h.register("extra", a), Err(Full));
        assert!(h.names().eq(["a", "b", "last"]));
        let mut c = Ctx {
            stop_at: 3,
            ..Ctx::default()
        };
        let mut rounds = 0;
        while h.dispatch(&mut c) == Flow::Continue {
            rounds += 1;
        }
        assert_eq!(rounds, 2);
        // The round that stopped still ran every hook, in registration order.
        assert_eq!(c.calls, [3, 3, 3]);
        assert_eq!(c.seen_order, [7, 8, 9]);
    }

    #[test]
    fn an_empty_table_never_stops() {
        let h: Hooks<Ctx, 2> = Hooks::new();
        let mut c = Ctx::default();
        assert_eq!(h.dispatch(&mut c), Flow::Continue);
        assert_eq!(h.names().count(), 0);
    }
}
