//! Which names a domain may have: none that `list` would show ambiguously or that would read as a domid.

use crate::DOMAIN0_NAME;

/// Whether `name` can name a domain: 1-64 bytes, not all digits (those read as domids), not `.` or
/// `..`, not Domain-0, and no character that hides or disguises what `list` shows: no `/`, whitespace
/// (a no-break space included), control, format or bidirectional-override characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.chars().all(|c| c.is_ascii_digit())
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || is_hidden_char(c))
        && name != DOMAIN0_NAME
}

/// Characters a name may not hold: whitespace, controls, and Unicode's format characters (category Cf:
/// bidirectional marks, embeddings, overrides and isolates, zero-width characters, the BOM, ...).
pub fn is_hidden_char(c: char) -> bool {
    const FORMAT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let u = u32::from(c);
    c.is_whitespace()
        || c.is_control()
        || u == 0x034F
        || (0xFE00..=0xFE0F).contains(&u)
        || FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}
