//! Fuzzes the three boot-config parsers (GRUB 2 with a grubenv, GRUB legacy, syslinux) with arbitrary
//! text. Besides "never panic, never hang", it checks what the chooser relies on: every entry has an
//! absolute kernel path and as many titles and ids as its position is deep; its position names it (or an
//! earlier entry at the same position); the default resolves to some entry.
#![no_main]

use domus_bootloader::config::{self, Format, Menu};
use libfuzzer_sys::fuzz_target;

fn check(menu: &Menu) {
    for e in &menu.entries {
        assert!(e.kernel.starts_with('/'), "relative kernel {:?}", e.kernel);
        assert!(e.initrds.iter().all(|i| i.starts_with('/')), "{:?}", e.initrds);
        assert!(!e.position.is_empty());
        assert_eq!(e.titles.len(), e.position.len());
        assert_eq!(e.ids.len(), e.position.len());
        let found = menu.find(&e.position_string()).expect("an entry's position names an entry");
        assert!(found.position == e.position || found.line <= e.line);
    }
    assert!(menu.entries.len() <= config::MAX_ENTRIES);
    if !menu.entries.is_empty() {
        assert!(menu.default_entry().is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The part after a NUL (if any) plays the grubenv.
    let (cfg, env) = match text.split_once('\0') {
        Some((c, e)) => (c, Some(e)),
        None => (&*text, None),
    };
    check(&config::parse(Format::Grub2, "/boot/grub/grub.cfg", cfg, env));
    check(&config::parse(Format::GrubLegacy, "/boot/grub/menu.lst", cfg, None));
    check(&config::parse(Format::Extlinux, "/boot/extlinux/extlinux.conf", cfg, None));
    let _ = config::parse_grubenv(env.unwrap_or(cfg));
});
