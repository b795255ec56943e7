//! A scripted guest and jumping time drive a [`GuestSession`]: no qemu, no
//! sockets, no clock.

use super::*;
use crate::microvm::launch::Accel;
use vt_init::protocol::{Bytes, ExecRequest, SecretFile};
use vt_repo::schema::{HealthKind, OnChange};

const MS: Duration = Duration::from_millis(1);

fn check() -> HealthCheck {
    HealthCheck {
        kind: HealthKind::Tcp,
        port: "http".into(),
        path: None,
        status: None,
        interval: vt_repo::Duration(1000),
        timeout: vt_repo::Duration(500),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        grace_period: vt_repo::Duration(0),
    }
}

fn secret(name: &str, version: u64, value: &str) -> DeliveredSecret {
    DeliveredSecret {
        name: name.into(),
        version,
        path: format!("/run/secrets/{name}"),
        content: Bytes(value.as_bytes().to_vec()),
    }
}

fn spec(name: &str, on_change: OnChange, signal: Option<&str>) -> EffectiveSecret {
    EffectiveSecret {
        name: name.into(),
        path: format!("/run/secrets/{name}"),
        version: 1,
        on_change,
        signal: signal.map(Into::into),
        format: None,
    }
}

fn file(name: &str, value: &str) -> SecretFile {
    SecretFile {
        path: format!("/run/secrets/{name}"),
        content_b64: Bytes(value.as_bytes().to_vec()),
        mode: 0o400,
        uid: 1000,
        gid: 1000,
    }
}

/// A session whose qemu started at `t0` and whose channel opened 100 ms later.
fn session(t0: Instant, health: Option<HealthCheck>) -> GuestSession {
    let config = Config {
        booted: t0,
        accel: Accel::Tcg,
        setup: guest::Setup {
            hostname: "ins-1".into(),
            argv: vec!["/bin/app".into()],
            uid: 1000,
            gid: 1000,
            ..guest::Setup::default()
        },
        secret_specs: vec![
            spec("db", OnChange::Signal, None),
            spec("api", OnChange::Signal, Some("USR1")),
            spec("tls", OnChange::Restart, None),
        ],
        secrets: vec![secret("db", 1, "one")],
        health,
    };
    GuestSession::new(t0 + 100 * MS, config)
}

fn transmits(s: &mut GuestSession) -> Vec<HostToGuest> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut GuestSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn line(message: &GuestToHost) -> Vec<u8> {
    guest::encode(message).expect("encodes")
}

fn phase(phase: Phase, detail: &str) -> Event {
    Event::Phase {
        phase,
        detail: detail.into(),
    }
}

fn failed(failure: Failure) -> Event {
    Event::End(End::Failed(failure))
}

/// Hello at `t0 + 1 s`, the setup sent.
fn greeted(t0: Instant, health: Option<HealthCheck>) -> GuestSession {
    let mut s = session(t0, health);
    let hello = GuestToHost::Hello {
        version: guest::PROTOCOL_VERSION,
    };
    s.handle_guest_line(t0 + 1000 * MS, &line(&hello));
    let sent = transmits(&mut s);
    assert!(
        matches!(sent.as_slice(), [HostToGuest::Setup(_)]),
        "{sent:?}"
    );
    s
}

/// Greeted, and the app started at `t0 + 2 s`.
fn running(t0: Instant, health: Option<HealthCheck>) -> GuestSession {
    let mut s = greeted(t0, health);
    s.handle_guest_message(t0 + 2000 * MS, GuestToHost::Started { pid: 7 });
    events(&mut s);
    s
}

#[test]
fn hello_gets_the_setup_with_the_secrets_of_that_moment() {
    let t0 = Instant::now();
    let mut s = session(t0, None);
    assert!(s.is_booting() && s.is_open() && !s.accepts_exec());
    assert_eq!(s.poll_timeout(), Some(t0 + 100 * MS + BOOT_TIMEOUT));
    assert!(transmits(&mut s).is_empty());

    // Secrets that change while the guest boots go into its setup.
    let newer = vec![secret("db", 2, "two")];
    s.handle_command(t0 + 500 * MS, Command::UpdateSecrets(newer));
    assert!(transmits(&mut s).is_empty());

    s.handle_guest_message(t0 + 1000 * MS, GuestToHost::Hello { version: 2 });
    let sent = transmits(&mut s);
    let [HostToGuest::Setup(setup)] = sent.as_slice() else {
        panic!("not a setup: {sent:?}");
    };
    assert_eq!(setup.hostname, "ins-1");
    assert_eq!(setup.secrets, vec![file("db", "two")]);
    assert!(events(&mut s).is_empty());
    assert!(!s.is_booting() && s.is_open() && !s.accepts_exec());
    // Nothing is due until the app starts (no health check here).
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn started_without_a_health_check_is_healthy() {
    let t0 = Instant::now();
    let mut s = greeted(t0, None);
    s.handle_guest_message(t0 + 1500 * MS, GuestToHost::Started { pid: 42 });
    assert_eq!(
        events(&mut s),
        [phase(Phase::Healthy, "tcg, running 1500 ms after boot")]
    );
    assert!(s.accepts_exec());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn health_checks_follow_the_interval_schedule() {
    let t0 = Instant::now();
    let mut s = greeted(t0, Some(check()));
    let setup_at = t0 + 1000 * MS;
    // The schedule started with the setup, but nothing is checked before
    // the app runs.
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(t0 + 1500 * MS);
    assert!(events(&mut s).is_empty());

    s.handle_guest_message(t0 + 1700 * MS, GuestToHost::Started { pid: 1 });
    assert_eq!(
        events(&mut s),
        [phase(
            Phase::Starting,
            "running, waiting for the health check (tcg)"
        )]
    );
    // The checks owed since the setup are due at once, one at a time.
    assert_eq!(s.poll_timeout(), Some(setup_at));
    s.handle_timeout(t0 + 1700 * MS);
    assert_eq!(events(&mut s), [Event::CheckHealth]);
    assert_eq!(s.poll_timeout(), None, "no second check while one runs");
    s.handle_timeout(t0 + 1710 * MS);
    assert!(events(&mut s).is_empty());
    s.handle_health(t0 + 1720 * MS, Ok(()));
    assert!(events(&mut s).is_empty(), "one pass is not a verdict");
    assert_eq!(s.poll_timeout(), Some(setup_at + 200 * MS));

    s.handle_timeout(t0 + 1720 * MS);
    assert_eq!(events(&mut s), [Event::CheckHealth]);
    s.handle_health(t0 + 1730 * MS, Ok(()));
    assert_eq!(
        events(&mut s),
        [phase(Phase::Healthy, "tcg, ready 1730 ms after boot")]
    );
    // From the first verdict on, one check per interval from then.
    let settled = t0 + 1730 * MS;
    assert_eq!(s.poll_timeout(), Some(settled + 1000 * MS));
    s.handle_timeout(settled + 999 * MS);
    assert!(events(&mut s).is_empty());

    s.handle_timeout(settled + 1000 * MS);
    assert_eq!(events(&mut s), [Event::CheckHealth]);
    s.handle_health(settled + 1001 * MS, Err("connection refused".into()));
    assert!(events(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(settled + 2000 * MS));
    s.handle_timeout(settled + 2000 * MS);
    assert_eq!(events(&mut s), [Event::CheckHealth]);
    s.handle_health(settled + 2001 * MS, Err("connection refused".into()));
    assert_eq!(
        events(&mut s),
        [phase(
            Phase::Unhealthy,
            "health check failing: connection refused"
        )]
    );
    assert_eq!(s.poll_timeout(), Some(settled + 3000 * MS));
}

#[test]
fn an_exec_session_with_stdin_runs_to_its_exit() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let command = ExecCommand {
        argv: vec!["cat".into()],
        stdin: b"hi".to_vec(),
        ..ExecCommand::default()
    };
    let id = s.open_exec(t0 + 3000 * MS, command, false);
    assert_eq!(id, 1);
    assert_eq!(
        transmits(&mut s),
        [
            HostToGuest::Exec(ExecRequest {
                id: 1,
                argv: vec!["cat".into()],
                ..ExecRequest::default()
            }),
            HostToGuest::ExecInput {
                id: 1,
                data_b64: Bytes(b"hi".to_vec()),
            },
            HostToGuest::ExecEof { id: 1 },
        ]
    );
    // Its input was all sent: more input is not this session's.
    let input = ExecInput::Data {
        data: b"x".to_vec(),
    };
    s.handle_command(t0, Command::ExecInput { id: 1, input });
    let later = t0 + 3100 * MS;
    for message in [
        GuestToHost::ExecOutput {
            id: 1,
            stream: Stream::Stdout,
            data_b64: Bytes(b"hi".to_vec()),
        },
        GuestToHost::ExecOutput {
            id: 9,
            stream: Stream::Stdout,
            data_b64: Bytes(b"not ours".to_vec()),
        },
        GuestToHost::ExecExited {
            id: 1,
            code: Some(0),
            signal: None,
        },
        GuestToHost::ExecOutput {
            id: 1,
            stream: Stream::Stderr,
            data_b64: Bytes(b"late".to_vec()),
        },
        GuestToHost::ExecExited {
            id: 1,
            code: Some(0),
            signal: None,
        },
    ] {
        s.handle_guest_message(later, message);
    }
    assert_eq!(
        events(&mut s),
        [
            Event::ExecOutput {
                id: 1,
                stream: Stream::Stdout,
                data: b"hi".to_vec(),
            },
            Event::ExecExited {
                id: 1,
                code: Some(0),
                signal: None,
            },
        ]
    );
    assert_eq!(
        s.open_exec(later, ExecCommand::default(), false),
        2,
        "IDs are not reused"
    );
}

#[test]
fn an_interactive_exec_session_gets_its_input_and_errors_on_stderr() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let now = t0 + 3000 * MS;
    let command = ExecCommand {
        argv: vec!["sh".into()],
        stdin: b"ignored".to_vec(),
        tty: true,
        cols: 80,
        rows: 24,
        interactive: true,
        ..ExecCommand::default()
    };
    let id = s.open_exec(now, command, true);
    assert_eq!(
        transmits(&mut s),
        [HostToGuest::Exec(ExecRequest {
            id,
            argv: vec!["sh".into()],
            tty: true,
            cols: 80,
            rows: 24,
            env: Vec::new(),
        })]
    );
    for input in [
        ExecInput::Data {
            data: b"ls\n".to_vec(),
        },
        ExecInput::Resize {
            cols: 100,
            rows: 40,
        },
        ExecInput::Signal { signal: 2 },
        ExecInput::Eof,
    ] {
        s.handle_command(now, Command::ExecInput { id, input });
    }
    assert_eq!(
        transmits(&mut s),
        [
            HostToGuest::ExecInput {
                id,
                data_b64: Bytes(b"ls\n".to_vec()),
            },
            HostToGuest::ExecResize {
                id,
                cols: 100,
                rows: 40,
            },
            HostToGuest::ExecSignal { id, signal: 2 },
            HostToGuest::ExecEof { id },
        ]
    );

    // A failed start goes to its stderr; the exit follows.
    s.handle_guest_message(
        now,
        GuestToHost::Error {
            message: "sh: not found".into(),
            id: Some(id),
        },
    );
    s.handle_guest_message(
        now,
        GuestToHost::ExecExited {
            id,
            code: Some(127),
            signal: None,
        },
    );
    assert_eq!(
        events(&mut s),
        [
            Event::ExecOutput {
                id,
                stream: Stream::Stderr,
                data: b"vt: sh: not found\r\n".to_vec(),
            },
            Event::ExecExited {
                id,
                code: Some(127),
                signal: None,
            },
        ]
    );
    s.handle_command(
        now,
        Command::ExecInput {
            id,
            input: ExecInput::Eof,
        },
    );
    assert!(transmits(&mut s).is_empty(), "the session is over");
}

#[test]
fn an_exec_session_that_cannot_run_fails() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let id = s.open_exec(t0 + 3000 * MS, ExecCommand::default(), false);
    transmits(&mut s);
    let error = GuestToHost::Error {
        message: "no such command".into(),
        id: Some(id),
    };
    s.handle_guest_message(t0 + 3100 * MS, error.clone());
    s.handle_guest_message(t0 + 3100 * MS, error);
    assert_eq!(
        events(&mut s),
        [Event::ExecFailed {
            id,
            message: "no such command".into(),
        }]
    );
}

#[test]
fn exec_sessions_wait_for_the_app() {
    let t0 = Instant::now();
    let mut s = greeted(t0, None);
    let id = s.open_exec(t0 + 1100 * MS, ExecCommand::default(), true);
    let input = ExecInput::Data {
        data: b"a".to_vec(),
    };
    s.handle_command(t0 + 1200 * MS, Command::ExecInput { id, input });
    assert!(transmits(&mut s).is_empty());
    s.handle_guest_message(t0 + 2000 * MS, GuestToHost::Started { pid: 1 });
    assert_eq!(
        transmits(&mut s),
        [
            HostToGuest::Exec(ExecRequest {
                id,
                ..ExecRequest::default()
            }),
            HostToGuest::ExecInput {
                id,
                data_b64: Bytes(b"a".to_vec()),
            },
        ]
    );
}

#[test]
fn new_secrets_go_to_the_running_guest_with_their_signals() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let now = t0 + 5000 * MS;
    let new = vec![
        secret("db", 2, "two"),
        secret("api", 1, "key"),
        secret("tls", 1, "cert"),
    ];
    s.handle_command(now, Command::UpdateSecrets(new.clone()));
    assert_eq!(
        transmits(&mut s),
        [HostToGuest::UpdateSecrets {
            secrets: vec![file("db", "two"), file("api", "key"), file("tls", "cert")],
            signals: vec![1, 10],
        }]
    );
    // The guest's answer is only logged.
    s.handle_guest_message(
        now,
        GuestToHost::SecretsUpdated {
            files: 3,
            signalled: vec![1, 10],
        },
    );
    assert!(events(&mut s).is_empty());

    // Only what changed since goes next time.
    let mut newer = new;
    newer[2] = secret("tls", 2, "cert2");
    s.handle_command(now, Command::UpdateSecrets(newer));
    assert_eq!(
        transmits(&mut s),
        [HostToGuest::UpdateSecrets {
            secrets: vec![file("tls", "cert2")],
            signals: Vec::new(),
        }]
    );
}

#[test]
fn secrets_that_change_during_setup_follow_the_start() {
    let t0 = Instant::now();
    let mut s = greeted(t0, None);
    s.handle_command(
        t0 + 1100 * MS,
        Command::UpdateSecrets(vec![secret("db", 2, "two")]),
    );
    s.handle_command(
        t0 + 1200 * MS,
        Command::UpdateSecrets(vec![secret("db", 3, "three")]),
    );
    assert!(transmits(&mut s).is_empty());
    s.handle_guest_message(t0 + 2000 * MS, GuestToHost::Started { pid: 1 });
    assert_eq!(
        transmits(&mut s),
        [HostToGuest::UpdateSecrets {
            secrets: vec![file("db", "three")],
            signals: vec![1],
        }]
    );
}

#[test]
fn a_graceful_stop_waits_for_the_power_off() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let now = t0 + 9000 * MS;
    s.handle_command(now, Command::Stop);
    assert_eq!(transmits(&mut s), [HostToGuest::Stop { grace_ms: 10_000 }]);
    assert_eq!(events(&mut s), [phase(Phase::Stopping, "stopping")]);
    assert!(!s.is_open() && !s.accepts_exec());
    assert_eq!(s.poll_timeout(), Some(now + STOP_GRACE + POWER_OFF_MARGIN));

    // Whatever the guest says now is not heard; a second stop does nothing.
    s.handle_guest_message(now, GuestToHost::Started { pid: 1 });
    s.handle_command(now, Command::Stop);
    s.handle_timeout(now + STOP_GRACE);
    assert!(transmits(&mut s).is_empty() && events(&mut s).is_empty());

    s.handle_vm_exited(now + 3000 * MS, "exit status: 0".into());
    assert_eq!(events(&mut s), [Event::End(End::Stopped)]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_vm_that_does_not_power_off_is_killed() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let now = t0 + 9000 * MS;
    s.handle_command(now, Command::Stop);
    transmits(&mut s);
    events(&mut s);
    s.handle_timeout(now + STOP_GRACE + POWER_OFF_MARGIN);
    assert_eq!(events(&mut s), [Event::Kill, Event::End(End::Stopped)]);
}

#[test]
fn a_stop_while_booting_follows_the_setup() {
    let t0 = Instant::now();
    let mut s = session(t0, None);
    s.handle_command(t0 + 200 * MS, Command::Stop);
    assert!(transmits(&mut s).is_empty() && events(&mut s).is_empty());
    s.handle_guest_message(t0 + 1000 * MS, GuestToHost::Hello { version: 2 });
    let sent = transmits(&mut s);
    assert!(
        matches!(
            sent.as_slice(),
            [
                HostToGuest::Setup(_),
                HostToGuest::Stop { grace_ms: 10_000 }
            ]
        ),
        "{sent:?}"
    );
    assert_eq!(events(&mut s), [phase(Phase::Stopping, "stopping")]);
}

#[test]
fn a_guest_that_never_says_hello_times_out() {
    let t0 = Instant::now();
    let mut s = session(t0, None);
    let deadline = t0 + 100 * MS + BOOT_TIMEOUT;
    s.handle_timeout(deadline - MS);
    assert!(events(&mut s).is_empty());
    s.handle_timeout(deadline);
    let end = events(&mut s);
    assert_eq!(end, [failed(Failure::BootTimeout(BOOT_TIMEOUT))]);
    let Event::End(End::Failed(failure)) = &end[0] else {
        unreachable!()
    };
    assert_eq!(failure.to_string(), "the guest did not boot within 120s");
    assert_eq!(failure.log(), Some(VmLog::Console));
    // Ended: nothing more happens.
    assert_eq!(s.poll_timeout(), None);
    s.handle_guest_message(deadline, GuestToHost::Hello { version: 2 });
    assert!(transmits(&mut s).is_empty() && events(&mut s).is_empty());
}

#[test]
fn a_first_line_that_is_not_hello_fails_the_boot() {
    let t0 = Instant::now();
    for first in [
        b"garbage".to_vec(),
        b"{\"type\":\"reboot\"}".to_vec(),
        line(&GuestToHost::Started { pid: 1 }),
    ] {
        let mut s = session(t0, None);
        s.handle_guest_line(t0 + 1000 * MS, &first);
        assert_eq!(events(&mut s), [failed(Failure::NoGreeting)]);
        assert!(transmits(&mut s).is_empty());
    }
    let mut s = session(t0, None);
    s.handle_channel_closed(t0 + 1000 * MS);
    assert_eq!(events(&mut s), [failed(Failure::NoGreeting)]);
    assert_eq!(Failure::NoGreeting.to_string(), "the guest did not greet");
}

#[test]
fn bad_or_repeated_lines_from_a_running_guest_are_skipped() {
    let t0 = Instant::now();
    let mut s = running(t0, None);
    let now = t0 + 3000 * MS;
    s.handle_guest_line(now, b"not json");
    s.handle_guest_line(now, b"{\"type\":\"reboot\"}");
    s.handle_guest_line(now, &line(&GuestToHost::Hello { version: 2 }));
    s.handle_guest_message(
        now,
        GuestToHost::Error {
            message: "unknown session".into(),
            id: Some(99),
        },
    );
    s.handle_guest_message(now, GuestToHost::error("a late complaint"));
    assert!(events(&mut s).is_empty() && transmits(&mut s).is_empty());
    assert!(s.is_open());
}

#[test]
fn log_lines_keep_their_stream_and_time() {
    let t0 = Instant::now();
    let mut s = greeted(t0, None);
    for (stream, text, time_ms) in [
        (Stream::Stdout, "up", 1_700_000_000_000),
        (Stream::Stderr, "oops", 0),
    ] {
        let log = GuestToHost::Log {
            stream,
            line: text.into(),
            time_ms,
        };
        s.handle_guest_line(t0 + 1500 * MS, &line(&log));
    }
    assert_eq!(
        events(&mut s),
        [
            Event::Log {
                stream: Stream::Stdout,
                line: "up".into(),
                time: Some(1_700_000_000_000),
            },
            Event::Log {
                stream: Stream::Stderr,
                line: "oops".into(),
                time: None,
            },
        ]
    );
}

#[test]
fn the_app_ending_kills_the_vm() {
    let cases = [
        ((Some(3), None, false), "the app exited with code 3"),
        ((None, Some(9), false), "the app was killed by signal 9"),
        (
            (Some(137), Some(9), true),
            "the app was killed for running out of memory",
        ),
        ((None, None, false), "the app ended"),
    ];
    let t0 = Instant::now();
    for ((code, signal, oom), why) in cases {
        let mut s = running(t0, None);
        s.handle_guest_message(t0 + 3000 * MS, GuestToHost::Exited { code, signal, oom });
        let failure = Failure::AppEnded { code, signal, oom };
        assert_eq!(failure.to_string(), why);
        assert_eq!(failure.log(), None);
        assert_eq!(events(&mut s), [Event::Kill, failed(failure)]);
    }
}

#[test]
fn a_setup_error_kills_the_vm_but_a_later_one_does_not() {
    let t0 = Instant::now();
    let mut s = greeted(t0, None);
    s.handle_guest_message(t0 + 1500 * MS, GuestToHost::error("no volume /dev/vdb"));
    assert_eq!(
        events(&mut s),
        [
            Event::Kill,
            failed(Failure::Guest("no volume /dev/vdb".into()))
        ]
    );

    let mut s = running(t0, None);
    s.handle_guest_message(t0 + 3000 * MS, GuestToHost::error("cannot signal"));
    assert!(events(&mut s).is_empty());
}

#[test]
fn a_closed_channel_waits_for_the_vm_to_exit() {
    let t0 = Instant::now();
    let now = t0 + 3000 * MS;
    let mut s = running(t0, None);
    s.handle_channel_closed(now);
    assert!(!s.is_open());
    assert_eq!(s.poll_timeout(), Some(now + CLOSE_WAIT));
    s.handle_vm_exited(now + 10 * MS, "signal: 9 (SIGKILL)".into());
    let failure = Failure::ChannelClosed(Some("signal: 9 (SIGKILL)".into()));
    assert_eq!(failure.to_string(), "the VM stopped (signal: 9 (SIGKILL))");
    assert_eq!(events(&mut s), [failed(failure)]);

    let mut s = running(t0, None);
    s.handle_channel_closed(now);
    s.handle_timeout(now + CLOSE_WAIT);
    assert_eq!(events(&mut s), [failed(Failure::ChannelClosed(None))]);
    assert_eq!(
        Failure::ChannelClosed(None).to_string(),
        "the VM stopped (still running)"
    );
}

#[test]
fn qemu_exiting_fails_the_vm() {
    let t0 = Instant::now();
    let mut s = session(t0, None);
    s.handle_vm_exited(t0 + 500 * MS, "exit status: 1".into());
    let failure = Failure::StoppedWhileBooting("exit status: 1".into());
    assert_eq!(
        failure.to_string(),
        "the VM stopped while booting (exit status: 1)"
    );
    assert_eq!(failure.log(), Some(VmLog::Console));
    assert_eq!(events(&mut s), [failed(failure)]);

    let mut s = running(t0, None);
    s.handle_vm_exited(t0 + 5000 * MS, "exit status: 1".into());
    let failure = Failure::QemuExited("exit status: 1".into());
    assert_eq!(failure.to_string(), "qemu exited (exit status: 1)");
    assert_eq!(failure.log(), Some(VmLog::Qemu));
    assert_eq!(events(&mut s), [failed(failure)]);
}

/// The session does no IO and reads no clock: its sources name no runtime,
/// socket, file or clock API.
#[test]
fn the_session_is_sans_io() {
    let sources = [
        ("mod.rs", include_str!("mod.rs")),
        ("exec.rs", include_str!("exec.rs")),
        ("health.rs", include_str!("health.rs")),
        ("outcome.rs", include_str!("outcome.rs")),
        ("secrets.rs", include_str!("secrets.rs")),
    ];
    let banned = [
        "tokio::",
        "Instant::now",
        "SystemTime",
        "clock::now",
        "std::fs",
        "std::io",
        "std::net::Tcp",
        "std::process",
        "std::thread",
    ];
    for (file, source) in sources {
        for word in banned {
            assert!(!source.contains(word), "session/{file} uses {word}");
        }
    }
}
