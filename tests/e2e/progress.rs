//! Progress on a terminal: `optout replay` draws a bar (bytes, records, records/s, ETA) when
//! stderr is a terminal, here a pseudo-terminal made by util-linux `script`; never when stderr
//! is a file or a pipe, never with `--quiet`; and log lines stay whole around it.

use std::process::Command;

use crate::common::records::fixture;

/// A file of `n` STOP records, one per line.
fn input(dir: &std::path::Path, n: usize) -> String {
    let line: Vec<u8> = fixture("inbound-stop-v5.json")
        .into_iter()
        .map(|b| if b == b'\n' { b' ' } else { b })
        .collect();
    let mut text = Vec::with_capacity((line.len() + 1) * n);
    for _ in 0..n {
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    let path = dir.join("in.jsonl");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `optout ARGS` with a clean environment and JSON logs at `info`, under a pseudo-terminal
/// when `tty`: everything it wrote on stdout and stderr.
fn optout(tty: bool, args: &[&str]) -> String {
    optout_with(tty, args, &[])
}

/// [`optout`] with `env` set too.
fn optout_with(tty: bool, args: &[&str], env: &[(String, String)]) -> String {
    let bin = env!("CARGO_BIN_EXE_optout");
    let mut cmd = if tty {
        let quoted: Vec<String> = std::iter::once(bin)
            .chain(args.iter().copied())
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let mut c = Command::new("script");
        c.args(["-qfec", &quoted.join(" "), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    };
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OPTOUT_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .env("RUST_LOG", "warn,optout=info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("COLUMNS", "160")
        .output()
        .expect("run optout (util-linux `script` for the terminal)");
    assert!(out.status.success(), "optout {args:?}: {out:?}");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn replay_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = input(dir.path(), 3_000);
    let store = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
    let replay = |db: &str, extra: &[&str]| {
        let mut args = vec!["--store", db, "--log-format", "json", "replay"];
        args.extend_from_slice(extra);
        args.push(&file);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let run = |tty: bool, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        optout(tty, &args)
    };

    let drawn = run(true, replay(&store("tty"), &[]));
    assert!(drawn.contains("3000 lines"), "{drawn}");
    for part in ["records read", "records/s", "MiB", "ETA"] {
        assert!(drawn.contains(part), "no {part:?} in: {drawn}");
    }
    // Each log line is written with the bar cleared first, and is whole JSON.
    let logs: Vec<&str> = drawn
        .split('\n')
        .filter(|l| l.contains("Revocation phrase detection on"))
        .map(|l| l.rsplit("\u{1b}[2K").next().unwrap().trim_end_matches('\r'))
        .collect();
    assert!(!logs.is_empty(), "{drawn}");
    for line in logs {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a log line garbled by the bar ({e}): {line:?}"));
    }

    let plain = run(false, replay(&store("plain"), &[]));
    assert!(plain.contains("3000 lines"), "{plain}");
    assert!(!plain.contains("records read"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "escape codes off a terminal: {plain}"
    );

    let quiet = run(true, replay(&store("quiet"), &["--quiet"]));
    assert!(quiet.contains("3000 lines"), "{quiet}");
    assert!(!quiet.contains("records read"), "{quiet}");
}

/// `optout run --exit-when-idle` on a terminal shows how far behind the stream it is; off a
/// terminal, nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_shows_its_lag_on_a_terminal_only() {
    use crate::common::emulator;
    use crate::common::records::keyed;
    let emu = emulator::ferrokinesis().await;
    let client = emu.client().await;
    let stream = emulator::unique_stream("progress");
    emulator::create_stream(&client, &stream, 1).await.unwrap();
    let records = (0..50).map(|_| fixture("inbound-stop-v5.json")).collect();
    emulator::put_records(&client, &stream, &keyed(records))
        .await
        .unwrap();
    let env = emu.env();
    let run = move |tty: bool| {
        let o = crate::common::optout::Optout::new(env.clone());
        let cmd = o.command(&[
            "run",
            "--stream",
            &stream,
            "--exit-when-idle",
            "1",
            "--poll-interval-ms",
            "100",
        ]);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let env: Vec<(String, String)> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = optout_with(tty, &args, &env);
        drop(o);
        text
    };
    let (drawn, plain) = tokio::task::spawn_blocking(move || (run(true), run(false)))
        .await
        .unwrap();
    assert!(drawn.contains("behind the stream's tip"), "{drawn}");
    assert!(!plain.contains("behind the stream's tip"), "{plain}");
    drop(emu);
}
