//! Generated documentation: `domus --generate-docs DIR` writes the man pages `domus(1)` (with one
//! `domus-COMMAND(1)` page per command, as git does), `domus.cfg(5)` and the bash, zsh and fish completions,
//! all rendered from the code's own definitions (the clap command tree and `domus_config::keys`), so a
//! command or key added anywhere shows up without editing any documentation. The packaging script
//! (scripts/build-deb.sh) runs it; scripts/test-package.sh checks the result.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;
use domus_config::keys;

/// Writes every generated page and completion file under `dir` (`man1/`, `man5/`, `completions/`).
pub fn generate(cmd: Command, dir: &Path) -> anyhow::Result<()> {
    let mut cmd = cmd.name("domus").bin_name("domus");
    cmd.build();
    let man1 = dir.join("man1");
    let man5 = dir.join("man5");
    let comp = dir.join("completions");
    for d in [&man1, &man5, &comp] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write(&man1.join("domus.1"), &main_page(&cmd)?)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("domus-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("domus {}", sub.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).section("1").render(&mut buf)?;
        write(&man1.join(format!("{name}.1")), &buf)?;
    }
    write(&man5.join("domus.cfg.5"), cfg_page().as_bytes())?;
    for (shell, file) in [
        (Shell::Bash, "domus"),
        (Shell::Zsh, "_domus"),
        (Shell::Fish, "domus.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "domus", &mut buf);
        // The same completion serves the xl and xm names (the domus-xl package's links).
        if shell == Shell::Bash {
            buf.extend_from_slice(b"complete -F _domus -o bashdefault -o default xl xm\n");
        }
        write(&comp.join(file), &buf)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// `domus(1)`: clap_mangen's page (name, synopsis, options, command list) plus the sections that
/// say how Domus relates to xl.
fn main_page(cmd: &Command) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone()).section("1");
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    man.render_description_section(&mut buf)?;
    man.render_options_section(&mut buf)?;
    man.render_subcommands_section(&mut buf)?;
    buf.extend_from_slice(XL_SECTION.as_bytes());
    man.render_version_section(&mut buf)?;
    Ok(buf)
}

const XL_SECTION: &str = r#".SH "XL COMPATIBILITY"
.B domus
accepts xl's command names, abbreviations (a prefix of exactly one name in xl's whole command table),
options and output formats. Installed as
.B xl
or
.B xm
(the domus\-xl package), it quotes itself under that name and behaves as xl; as
.B xentop
it runs the
.B top
command. Commands of xl that Domus does not implement fail with xl's
.I "command \(dqNAME\(dq not implemented"
message; each command's own page
.RB ( domus\-COMMAND (1))
lists its options. Domains run as KVM processes
.RB ( domus\-vmm (8))
supervised by
.BR domusd (8),
not on the Xen hypervisor; the config keys and values Domus ignores or refuses are listed in
.BR domus.cfg (5).
.SH FILES
.TP
.I /etc/domus/
domain configs (searched first, then
.IR /etc/xen/ );
format in
.BR domus.cfg (5)
.TP
.I /etc/domus/auto/
configs started at boot by domus\-autostart.service
.TP
.I /run/domus/domusd.sock
the domusd API socket
.SH "SEE ALSO"
.BR domus.cfg (5),
.BR domusd (8),
.BR domus\-vmm (8),
.BR xl (1)
"#;

/// Escapes a key or word for roff text (hyphens and a leading dot or quote).
fn roff_word(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// `domus.cfg(5)`, from `domus_config::keys`: the keys Domus honours, ignores (with a warning) and refuses.
fn cfg_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut s = format!(
        ".TH DOMUS.CFG 5 \"\" \"domus {version}\" \"Domus\"\n\
         .nh\n.ad l\n.SH NAME\ndomus.cfg \\- domain configuration files for Domus (xl.cfg syntax)\n\
         .SH DESCRIPTION\n\
         Domus reads xl.cfg(5) domain configuration files: KEY = VALUE lines, strings in quotes, lists in\n\
         brackets, comments after #. A config named without a path is looked up in /etc/domus/ then\n\
         /etc/xen/. Each key below is in exactly one class; the list is generated from the code that\n\
         reads configs, so it is complete for this version.\n\
         .SH \"HONOURED KEYS\"\n\
         These keys are read and acted on (see xl.cfg(5) for their meaning; differences are noted in\n\
         the error messages Domus gives for values it cannot honour).\n"
    );
    for k in keys::IMPLEMENTED {
        s.push_str(&format!(
            ".TP\n.B {}\n{}\n",
            roff_word(k),
            roff_word(keys::describe(k))
        ));
    }
    s.push_str(
        ".SH \"IGNORED KEYS\"\n\
         These xl.cfg(5) keys are accepted and ignored: Domus prints a warning naming each and starts the\n\
         domain without it.\n.PP\n",
    );
    let mut ignored: Vec<&str> = keys::NOT_IMPLEMENTED.to_vec();
    ignored.sort_unstable();
    ignored.dedup();
    s.push_str(
        &ignored
            .iter()
            .map(|k| format!(".B {}", roff_word(k)))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    s.push('\n');
    s.push_str(
        ".SH \"REFUSED VALUES\"\n\
         Some values of honoured keys are refused (noted with the key above): creating such a domain\n\
         fails with an error naming the key and the value, and nothing is started. A key in neither list above is unknown:\n\
         Domus warns and suggests the nearest known key when one is close (memroy \\(-> memory).\n\
         .SH \"SEE ALSO\"\n.BR domus (1),\n.BR xl.cfg (5)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_page_lists_every_key_of_the_key_table() {
        let page = cfg_page();
        for k in keys::IMPLEMENTED {
            assert!(page.contains(&format!(".B {}\n", roff_word(k))), "{k}");
        }
        let ignored = &page[page.find("IGNORED KEYS").unwrap()..];
        for k in keys::NOT_IMPLEMENTED {
            assert!(ignored.contains(&format!(".B {}\n", roff_word(k))), "{k}");
        }
    }

    #[test]
    fn generate_writes_a_page_per_command_and_the_completions() {
        use clap::CommandFactory;
        let dir = tempfile::tempdir().unwrap();
        generate(crate::Cli::command(), dir.path()).unwrap();
        for sub in crate::Cli::command().get_subcommands() {
            let page = dir.path().join(format!("man1/domus-{}.1", sub.get_name()));
            assert!(page.is_file(), "{}", page.display());
        }
        assert!(!dir.path().join("man1/domus-help.1").exists());
        let main = fs::read_to_string(dir.path().join("man1/domus.1")).unwrap();
        assert!(main.contains("domus\\-shutdown(1)") || main.contains("domus-shutdown(1)"));
        for f in [
            "completions/domus",
            "completions/_domus",
            "completions/domus.fish",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
    }
}
