//! `xl migrate [-s SSHCOMMAND] [-C CONFIG] [-p] [--debug] DOMAIN HOST`: live migration to another Domus
//! host.
//!
//! As xl does, this runs `SSHCOMMAND HOST <prog> migrate-receive` through `/bin/sh -c` (directly
//! when no word needs a shell; default SSHCOMMAND `ssh`; `<prog>` is how this CLI was invoked, `xl`
//! or `domus`) and streams the domain
//! through that pipe: the image header with the configuration (the domain's own, or CONFIG), then
//! the domain's VMM writes its live stream (pre-copy with dirty logging, then stop-and-copy: see
//! `domus_vmm::machine::migrate`) straight into the pipe to the receiver (passed to it on a socket
//! pair that then carries the go byte; a VMM predating that writes into the socket and this command
//! relays it, as it does with `DOMUS_MIGRATE_RELAY=1`), and reports
//! its progress (phase, round, dirty pages, bytes), printed as it comes (`super::progress`). The
//! guest is paused for the stop-and-copy only once the receiver says the target VMM reads the
//! stream (the go byte on that socket: see `migrate_link`).
//!
//! A paused domain migrates too (one pass, no dirty logging: `domus_vmm::machine::migrate_paused`).
//! As with xl, the domain runs on the target afterwards unless `-p` (passed on to `migrate-receive
//! -p`), whatever its state here; a failure leaves it paused here as it was.
//!
//! `migrate-receive` on the other side restores the domain through its domusd and answers one line
//! once the domain runs there; only then is the source destroyed. Any failure before that leaves
//! the source running (the VMM resumes it itself if the stream broke; this command unpauses it if
//! the target failed after the stream was complete); the target removes a domain it could not
//! start.
//!
//! Writable disks: the target's domusd opens them without their lock (`RestoreRequest::incoming`);
//! the source VMM releases its locks once the guest is paused for the stop-and-copy, the target VMM
//! takes them once the stream is in, and an unpause of the source takes them back first (refused
//! while the target holds them): see `domus_vmm::machine::disk_locks`.
//!
//! Dirty tracking is KVM's dirty ring where KVM offers it, else the bitmap; the choice is the source
//! VMM's, made when it started (`DOMUS_VMM_DIRTY_BITMAP=1` in domusd's environment forces the bitmap).
//! `DOMUS_MIGRATE_DOWNTIME_MS` sets the downtime target (default 300 ms).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Args as ClapArgs;
use domus_vmm_api::{Line, MigrateReply, ReplyError, Request};

use super::migrate_receive::phase;
use super::Ctx;
use crate::api;

/// The line `migrate-receive` prints once the domain runs on the target.
pub const READY_PREFIX: &str = "migrate-receive: running as domid ";

/// Arguments of `migrate`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The command that reaches HOST (run through /bin/sh as `SSHCOMMAND HOST <prog> migrate-receive`).
    #[arg(short = 's', value_name = "SSHCOMMAND", default_value = "ssh")]
    pub ssh: String,
    /// An xl config file to send instead of the domain's own.
    #[arg(short = 'C', value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Leave the domain paused on the target (passed on as `migrate-receive -p`).
    #[arg(short = 'p')]
    pub paused: bool,
    /// Statistics at the end (total time, downtime, bytes, rounds).
    #[arg(long = "debug")]
    pub debug: bool,
    /// Do not wait in the background for the domain's death on the target (xl's -e): accepted.
    #[arg(short = 'e')]
    pub no_wait: bool,
    /// The domain (name or domid).
    pub domain: String,
    /// The target host.
    pub host: String,
}

/// Runs `migrate`.
///
/// # Errors
/// Any failure; the domain then runs on here.
pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    phase("migrate: started");
    let client = api::client();
    let d = client.get(&args.domain)?;
    let config = match &args.config {
        Some(f) => api::prepare_config(super::create::load(&super::create::Args::for_file(
            f.clone(),
        ))?)?,
        None => d
            .config
            .clone()
            .ok_or_else(|| anyhow!("domain {} has no recorded configuration", d.name))?,
    };
    // The VMM's control socket sits next to its console socket (domusd's per-domain directory).
    let control = d
        .console_path
        .as_deref()
        .map(|c| PathBuf::from(c).with_file_name("control.sock"))
        .ok_or_else(|| anyhow!("domain {} is not running", d.name))?;
    let rune = format!(
        "exec {} {} {} migrate-receive{}",
        args.ssh,
        args.host,
        ctx.prog.name(),
        if args.paused { " -p" } else { "" }
    );
    let was_paused = d.state == domus_api::messages::DomainState::Paused;
    tracing::debug!(%rune, "starting the receiver");
    let mut child = receiver_command(&rune)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {rune:?}"))?;
    phase("migrate: receiver spawned");
    let result = send(&d.name, &config, &control, &mut child, was_paused);
    match result {
        Ok(Sent::Running(stats)) => {
            client
                .action(&d.domid.to_string(), "destroy", None::<&()>)
                .context("the domain runs on the target, but destroying it here failed")?;
            let _ = child.wait();
            if args.debug {
                print_stats(&stats);
            }
            eprintln!("migration successful: {} now runs on {}", d.name, args.host);
            Ok(())
        }
        Ok(Sent::TargetFailed(e)) => {
            // The stream was complete, so the VMM left the guest paused: let it run again here
            // (a domain that was paused gets its disks' locks back and stays paused).
            let _ = child.kill();
            let _ = child.wait();
            let again = if was_paused { "pause" } else { "unpause" };
            client
                .action(&d.domid.to_string(), again, None::<&()>)
                .context("the target failed and taking the domain back here failed too")?;
            bail!("migration failed, {} runs on here: {e}", d.name)
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e.context(format!("migration failed, {} runs on here", d.name)))
        }
    }
}

/// Size of the pipe to the receiver (the most an unprivileged process may ask for by default,
/// `/proc/sys/fs/pipe-max-size`): the pre-copy then crosses it in 1 MiB turns instead of 64 KiB
/// ones (BENCHMARKS.md, issue 18's migration sections).
const PIPE_BYTES: usize = 1 << 20;

/// The receiver's command: `rune` (`exec SSHCOMMAND HOST <prog> migrate-receive ...`) run by
/// `/bin/sh -c` as xl does, or, when no word of it needs a shell (only letters, digits and
/// `_-./=:,@+%`), the program run directly: the same command without a shell's start-up on the
/// migration's path.
fn receiver_command(rune: &str) -> Command {
    let plain = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@+%".contains(c))
    };
    let words: Vec<&str> = rune.split(' ').collect();
    match words.as_slice() {
        ["exec", program, rest @ ..]
            if !program.is_empty() && words.iter().all(|w| !w.is_empty() && plain(w)) =>
        {
            let mut c = Command::new(program);
            c.args(rest);
            c
        }
        _ => {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", rune]);
            c
        }
    }
}

/// What the sending side achieved.
enum Sent {
    /// The target runs the domain.
    Running(Stats),
    /// The stream was sent completely (the source is paused) but the target did not confirm.
    TargetFailed(String),
}

struct Stats {
    reply: MigrateReply,
    total: Duration,
    downtime: Duration,
}

fn send(
    name: &str,
    config: &domus_config::DomainConfig,
    control: &std::path::Path,
    child: &mut Child,
    paused: bool,
) -> anyhow::Result<Sent> {
    let started = Instant::now();
    let mut to_target = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no pipe to the receiver"))?;
    // The VMM writes the stream straight into this pipe: at 64 KiB (the default) it and the
    // target VMM take turns every 64 KiB. Best effort: a pipe that stays small only costs time.
    if let Err(e) = rustix::pipe::fcntl_setpipe_size(&to_target, PIPE_BYTES) {
        tracing::debug!(error = %e, "cannot widen the pipe to the receiver");
    }
    let from_target = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no pipe from the receiver"))?;
    domus_api::image::write_header(&mut to_target, config)
        .context("cannot send the domain's configuration to the receiver")?;
    phase("migrate: header sent");
    // The VMM gets one end of a socket pair; the receiver's "receiving" line becomes a go byte on it
    // that lets the VMM pause the guest (`migrate_link`). The stream itself goes straight from the
    // VMM into the receiver's pipe (its descriptor sent on that socket first), unless the VMM
    // predates that: then it writes into the socket and a thread here relays it.
    let (r, w, go) =
        super::migrate_link::stream_pair().context("cannot create the stream's socket pair")?;
    let direct = std::env::var_os("DOMUS_MIGRATE_RELAY").is_none_or(|v| v.is_empty());
    if direct {
        super::migrate_link::hand_over(&r, &to_target)
            .context("cannot pass the receiver's pipe to the VMM")?;
    }
    // A paused domain goes in one pass: its VMM waits for no go byte.
    let watcher = super::migrate_link::watch_receiver(from_target, (!paused).then_some(go));
    let mut relay = None;
    let mut to_target = Some(to_target);
    let mut relay_here = || -> anyhow::Result<()> {
        if direct {
            // The descriptor sent for the direct stream is still queued: take it back.
            super::migrate_link::take_back(&w).context("cannot take the stream back")?;
        }
        let (r, to) = (
            r.try_clone().context("cannot relay the stream")?,
            to_target
                .take()
                .ok_or_else(|| anyhow!("no pipe to the receiver"))?,
        );
        relay = Some(std::thread::spawn(move || relay_stream(r, to)));
        Ok(())
    };
    if !direct {
        relay_here()?;
    }
    let reply = migrate_request(name, control, &w, direct, &mut relay_here);
    // The guest was paused `stop_copy_ms` before this reply: the downtime runs until the target
    // confirms.
    let replied = Instant::now();
    phase("migrate: the VMM sent the whole stream");
    drop(w);
    drop(r);
    // The VMM closed its copy of the receiver's pipe: with this one closed too, the receiver reads the
    // end of the stream.
    drop(to_target);
    let relayed = match relay {
        Some(t) => t.join().map_err(|_| anyhow!("the relay thread panicked"))?,
        None => Ok(()),
    };
    let reply = reply?;
    if let Err(e) = relayed {
        return Ok(Sent::TargetFailed(format!(
            "the receiver stopped reading: {e}"
        )));
    }
    // The receiver answers one line once the domain runs there (or closes on failure).
    let line = watcher
        .join()
        .map_err(|_| anyhow!("the receiver's watcher thread panicked"))?;
    phase("migrate: receiver answered");
    if !line.starts_with(READY_PREFIX) {
        return Ok(Sent::TargetFailed(
            "the receiver did not confirm that the domain runs (see its messages above)".into(),
        ));
    }
    let downtime = Duration::from_millis(reply.stop_copy_ms) + replied.elapsed();
    Ok(Sent::Running(Stats {
        reply,
        total: started.elapsed(),
        downtime,
    }))
}

/// Sends the `migrate` request with `w` attached, prints the VMM's progress reports and waits for its
/// statistics. With `direct`, a VMM that refuses it gets the request again without, once
/// `relay_here` started relaying the stream.
fn migrate_request(
    name: &str,
    control: &std::path::Path,
    w: &OwnedFd,
    mut direct: bool,
    relay_here: &mut dyn FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<MigrateReply> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let s = UnixStream::connect(control)
        .with_context(|| format!("cannot reach the domain's VMM at {}", control.display()))?;
    let downtime_ms = std::env::var("DOMUS_MIGRATE_DOWNTIME_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut progress_ms = Some(super::progress::interval_ms());
    let mut from_vmm = BufReader::new(&s);
    'ask: loop {
        let mut line = domus_vmm_api::encode_request(&Request::Migrate {
            downtime_ms,
            progress_ms,
            direct,
        });
        line.push('\n');
        from_vmm
            .get_ref()
            .send_with_fd(line.as_bytes(), w.as_raw_fd())
            .map_err(|e| anyhow!("cannot send the migrate request: {e}"))?;
        loop {
            let mut line = String::new();
            if from_vmm
                .read_line(&mut line)
                .context("no answer from the domain's VMM")?
                == 0
            {
                bail!("the domain's VMM closed the control connection without an answer");
            }
            match domus_vmm_api::decode_line::<MigrateReply>(line.as_bytes()) {
                Ok(Line::Progress(p)) => {
                    eprintln!("{}", super::progress::line("migration", name, &p));
                }
                Ok(Line::Reply(r)) => return Ok(r),
                // A VMM started before progress reports existed: without them.
                Err(ReplyError::Refused(m))
                    if progress_ms.is_some() && domus_vmm_api::refuses_progress(&m) =>
                {
                    progress_ms = None;
                    continue 'ask;
                }
                // A VMM started before direct streams existed: relayed.
                Err(ReplyError::Refused(m)) if direct && domus_vmm_api::refuses_direct(&m) => {
                    relay_here()?;
                    direct = false;
                    continue 'ask;
                }
                Err(e) => bail!("the VMM did not send the domain: {e}"),
            }
        }
    }
}

/// Relays the VMM's stream from the socket `r` to the receiver (a VMM that cannot write to it
/// directly).
fn relay_stream(r: OwnedFd, mut to: std::process::ChildStdin) -> std::io::Result<()> {
    if super::migrate_link::splice_all(&r, &to, &|_| {})? {
        return Ok(());
    }
    let mut from = std::fs::File::from(r);
    // 256 KiB: what it holds when the source pauses is downtime.
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(buf.get(..n).unwrap_or_default())?;
    }
    to.flush()
}

fn print_stats(s: &Stats) {
    let r = &s.reply;
    eprintln!("migration statistics:");
    eprintln!("  total time:      {:.3} s", s.total.as_secs_f64());
    eprintln!("  downtime:        {:.3} s", s.downtime.as_secs_f64());
    eprintln!("  bytes sent:      {} ({} MiB)", r.bytes, r.bytes >> 20);
    eprintln!("  pre-copy rounds: {}", r.iterations);
    eprintln!("  dirty pages:     {:?}", r.dirty_pages);
    eprintln!("  dirty tracking:  {}", r.tracking);
    eprintln!("  stop-and-copy:   {} ms", r.stop_copy_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A VMM on `path` answering each request line with the next of `answers` (lines), recording
    /// the requests.
    /// A fake VMM that refuses the first request with `refusal` and answers the second with `reply`.
    fn fake_vmm_refusing_once(
        path: &std::path::Path,
        refusal: &str,
        reply: &MigrateReply,
    ) -> std::thread::JoinHandle<Vec<String>> {
        fake_vmm(
            path,
            vec![
                format!("{}\n", domus_vmm_api::encode_refusal(refusal)),
                format!("{}\n", domus_vmm_api::encode_ok(reply)),
            ],
        )
    }

    fn fake_vmm(
        path: &std::path::Path,
        answers: Vec<String>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        let l = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut seen = Vec::new();
            for a in answers {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                seen.push(line.trim_end().to_owned());
                (&s).write_all(a.as_bytes()).unwrap();
            }
            seen
        })
    }

    #[test]
    fn progress_lines_come_before_the_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let p = domus_vmm_api::Progress {
            phase: domus_vmm_api::Phase::PreCopy,
            round: 1,
            bytes: 4096,
            dirty_pages: 0,
            pages: 1,
            elapsed_ms: 1,
        };
        let reply = MigrateReply {
            bytes: 8192,
            iterations: 1,
            ..MigrateReply::default()
        };
        let answer = format!(
            "{}\n{}\n",
            domus_vmm_api::encode_progress(&p),
            domus_vmm_api::encode_ok(&reply)
        );
        let vmm = fake_vmm(&path, vec![answer]);
        let (_r, w) = rustix::pipe::pipe().unwrap();
        assert_eq!(
            migrate_request("web", &path, &w, false, &mut || Ok(())).unwrap(),
            reply
        );
        let seen = vmm.join().unwrap();
        assert!(seen[0].contains(r#""progress_ms":"#), "{seen:?}");
    }

    #[test]
    fn a_vmm_without_direct_streams_gets_the_request_again_with_a_relay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let reply = MigrateReply {
            bytes: 3,
            ..MigrateReply::default()
        };
        let vmm = fake_vmm_refusing_once(
            &path,
            "bad request: unknown field `direct`, expected `downtime_ms` or `progress_ms`",
            &reply,
        );
        let (_r, w) = rustix::pipe::pipe().unwrap();
        let mut relays = 0;
        let got = migrate_request("web", &path, &w, true, &mut || {
            relays += 1;
            Ok(())
        });
        assert_eq!(got.unwrap(), reply);
        assert_eq!(relays, 1);
        let seen = vmm.join().unwrap();
        assert!(seen[0].contains(r#""direct":true"#), "{seen:?}");
        assert!(!seen[1].contains("direct"), "{seen:?}");
    }

    #[test]
    fn an_older_vmm_gets_the_request_again_without_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let reply = MigrateReply {
            bytes: 1,
            ..MigrateReply::default()
        };
        let vmm = fake_vmm_refusing_once(
            &path,
            "bad request: unknown field `progress_ms`, expected `downtime_ms`",
            &reply,
        );
        let (_r, w) = rustix::pipe::pipe().unwrap();
        assert_eq!(
            migrate_request("web", &path, &w, false, &mut || Ok(())).unwrap(),
            reply
        );
        let seen = vmm.join().unwrap();
        assert!(seen[0].contains("progress_ms"), "{seen:?}");
        assert!(!seen[1].contains("progress_ms"), "{seen:?}");
        // Any other refusal is the answer.
        let path = dir.path().join("other.sock");
        let vmm = fake_vmm(
            &path,
            vec![format!(
                "{}\n",
                domus_vmm_api::encode_refusal("migrate: not supported by this machine")
            )],
        );
        let e = migrate_request("web", &path, &w, false, &mut || Ok(())).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        vmm.join().unwrap();
    }

    #[test]
    fn a_receiver_rune_without_shell_words_runs_directly_and_others_through_sh() {
        let prog = |c: &Command| {
            (
                c.get_program().to_string_lossy().into_owned(),
                c.get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            prog(&receiver_command(
                "exec /tmp/ssh-b hostb domus migrate-receive -p"
            )),
            (
                "/tmp/ssh-b".to_owned(),
                vec!["hostb", "domus", "migrate-receive", "-p"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        for rune in [
            "exec ssh -o 'StrictHostKeyChecking no' host xl migrate-receive",
            "exec ssh  host xl migrate-receive",
            "exec ssh $HOST xl migrate-receive",
            "exec ssh host;rm xl migrate-receive",
        ] {
            assert_eq!(
                prog(&receiver_command(rune)),
                ("/bin/sh".to_owned(), vec!["-c".to_owned(), rune.to_owned()]),
                "{rune}"
            );
        }
    }
}
