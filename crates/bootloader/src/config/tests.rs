//! Parser tests, malformed input included (the image tests in tests/ cover the well-formed paths).

use super::*;

fn titles(m: &Menu) -> Vec<&str> {
    m.entries.iter().map(Entry::title).collect()
}

#[test]
fn grub2_quotes_escapes_variables_and_comments() {
    let cfg = r#"
set root=(hd0,1) ; set v=quiet
x='single quoted $v'
menuentry "Title \"with\" quotes" {
  linux /vmlinuz a=$v b="${v}" c='$v' d=\$v e="$x" # comment
}
"#;
    let m = parse_grub2(cfg, None);
    assert_eq!(titles(&m), ["Title \"with\" quotes"]);
    assert_eq!(
        m.entries[0].args,
        "a=quiet b=quiet c=$v d=$v e=single quoted $v"
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn grub2_unset_variables_and_missing_kernels_are_warned_not_guessed() {
    let cfg = "menuentry 'A' {\n linux /vmlinuz $nothere\n}\nmenuentry 'B' {\n echo hi\n}\nmenuentry 'C' {\n linux ($root)\n}\n";
    let m = parse_grub2(cfg, None);
    assert_eq!(titles(&m), ["A"]);
    assert_eq!(m.entries[0].args, "");
    assert_eq!(
        m.warnings,
        [
            "grub.cfg line 1: entry 'A': variable $nothere is not set and expands to nothing",
            "grub.cfg line 4: entry 'B' has no 'linux' command: skipped",
            "grub.cfg line 7: entry 'C' has no usable kernel path ('()'): skipped",
        ]
    );
}

#[test]
fn grub2_malformed_blocks_end_cleanly() {
    // Unterminated quote, unterminated block, stray brace: no panic, what can be read is kept.
    let m = parse_grub2("menuentry 'A' {\n linux /a\n", None);
    assert_eq!(titles(&m), ["A"]);
    let m = parse_grub2("menuentry 'A {\n linux /a\n}\n", None);
    assert!(m.entries.is_empty());
    let m = parse_grub2("}\nmenuentry 'A' { linux /a }\n", None);
    assert!(m.entries.is_empty());
    assert_eq!(
        m.warnings,
        ["grub.cfg line 1: unexpected '}': the rest of the file is ignored"]
    );
    let m = parse_grub2("menuentry 'A'\nlinux /a\n", None);
    assert_eq!(
        m.warnings,
        ["grub.cfg line 1: 'A' without a '{' block: ignored"]
    );
}

#[test]
fn grub2_several_initrds_are_concatenated_and_devices_stripped() {
    let m = parse_grub2("menuentry 'A' {\n linux16 (hd0,gpt2)/vmlinuz\n initrd (hd0,gpt2)/ucode.img /initrd.img\n}\n", None);
    assert_eq!(m.entries[0].kernel, "/vmlinuz");
    assert_eq!(m.entries[0].initrds, ["/ucode.img", "/initrd.img"]);
}

#[test]
fn grub2_default_fallback_is_explained() {
    let m = parse_grub2("set default=7\nmenuentry 'A' { linux /a }\n", None);
    let (e, note) = m.default_entry().unwrap();
    assert_eq!(e.title(), "A");
    assert_eq!(
        note.as_deref(),
        Some("default entry '7' names no bootable entry: booting the first one, 'A'")
    );
}

#[test]
fn grubenv_parses_escapes_and_ignores_padding() {
    let env = parse_grubenv("# GRUB Environment Block\nsaved_entry=a\\\\b\nnext_entry=\n#####");
    assert_eq!(env.get("saved_entry").map(String::as_str), Some("a\\b"));
    assert_eq!(env.get("next_entry").map(String::as_str), Some(""));
}

#[test]
fn legacy_menu_with_equals_saved_default_and_missing_kernel() {
    let m = parse_legacy(
        "default=saved\ntimeout=3\ntitle A\nroot (hd0,0)\ntitle B\nkernel=/vmlinuz ro\ntitle\n",
    );
    assert_eq!(titles(&m), ["B"]);
    assert_eq!(m.entries[0].position, [1]);
    assert_eq!(m.entries[0].args, "ro");
    assert_eq!(
        m.warnings,
        [
            "menu.lst line 1: 'default saved' is not supported: using the first entry",
            "menu.lst line 3: entry 'A' has no 'kernel' line: skipped",
            "menu.lst line 7: entry '' has no 'kernel' line: skipped",
        ]
    );
}

#[test]
fn extlinux_global_append_menu_default_and_modules() {
    let cfg = "APPEND console=ttyS0\nDEFAULT b\nINCLUDE other.cfg\nLABEL a\n MENU DEFAULT\n LINUX vmlinuz\nLABEL b\n KERNEL /vmlinuz\n APPEND -\nLABEL c\n KERNEL menu.c32\nLABEL d\n LOCALBOOT 0\nTEXT HELP\nLABEL notalabel\nENDTEXT\n";
    let m = parse_extlinux("/boot/syslinux/syslinux.cfg", cfg);
    assert_eq!(titles(&m), ["a", "b"]);
    assert_eq!(m.entries[0].kernel, "/boot/syslinux/vmlinuz");
    assert_eq!(m.entries[0].args, "console=ttyS0");
    assert_eq!(m.entries[1].args, "");
    assert_eq!(
        m.default.as_deref(),
        Some("a"),
        "MENU DEFAULT wins over DEFAULT"
    );
    assert_eq!(m.warnings.len(), 3, "{:?}", m.warnings);
}

#[test]
fn entry_limits_hold() {
    let mut cfg = String::new();
    for i in 0..(MAX_ENTRIES + 10) {
        cfg.push_str(&format!("menuentry '{i}' {{ linux /k }}\n"));
    }
    let m = parse_grub2(&cfg, None);
    assert_eq!(m.entries.len(), MAX_ENTRIES);
    assert!(m
        .warnings
        .iter()
        .any(|w| w.contains("more than 512 entries")));
}

#[test]
fn paths_are_normalised() {
    assert_eq!(normalize("boot/./x/../vmlinuz"), "/boot/vmlinuz");
    assert_eq!(normalize("/../../vmlinuz"), "/vmlinuz");
    assert_eq!(grub_path("(hd0,1)"), None);
    assert_eq!(grub_path("(hd0,1)/a//b/"), Some("/a/b".into()));
    let m = parse_extlinux(
        "/boot/extlinux/extlinux.conf",
        "LABEL a\nKERNEL ../vmlinuz\nINITRD ./i1,../../i2\n",
    );
    assert_eq!(m.entries[0].kernel, "/boot/vmlinuz");
    assert_eq!(m.entries[0].initrds, ["/boot/extlinux/i1", "/i2"]);
}
