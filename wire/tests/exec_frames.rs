//! The exec frames on the controller → host stream: an `ExecCommand`, then,
//! for an interactive one, `ExecInput`s. Their JSON is the wire format, so it
//! must not change by accident, and an older controller's command (no
//! interactive fields) must still read.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use vt_wire::messages::{ExecCommand, ExecEvent, ExecInput};

#[test]
fn exec_input_frames_are_tagged_json() {
    let cases = [
        (
            ExecInput::Data {
                data: b"ls\n".to_vec(),
            },
            json!({"type": "data", "data": [108, 115, 10]}),
        ),
        (ExecInput::Eof, json!({"type": "eof"})),
        (
            ExecInput::Resize { cols: 80, rows: 24 },
            json!({"type": "resize", "cols": 80, "rows": 24}),
        ),
        (
            ExecInput::Signal { signal: 1 },
            json!({"type": "signal", "signal": 1}),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(serde_json::to_value(&input).unwrap(), expected);
        assert_eq!(
            serde_json::from_value::<ExecInput>(expected).unwrap(),
            input
        );
    }
}

#[test]
fn an_interactive_command_carries_its_terminal() {
    let command = ExecCommand {
        instance: "ins_1".into(),
        argv: vec!["sh".into()],
        tty: true,
        cols: 120,
        rows: 40,
        interactive: true,
        ..ExecCommand::default()
    };
    let value = serde_json::to_value(&command).unwrap();
    assert_eq!(
        value,
        json!({"instance": "ins_1", "argv": ["sh"], "stdin": [], "tty": true,
               "cols": 120, "rows": 40, "interactive": true})
    );
    assert_eq!(
        serde_json::from_value::<ExecCommand>(value).unwrap(),
        command
    );
}

#[test]
fn a_command_without_the_new_fields_is_a_plain_exec() {
    let old: ExecCommand =
        serde_json::from_value(json!({"instance": "ins_1", "argv": ["true"], "stdin": [1]}))
            .unwrap();
    assert_eq!(
        old,
        ExecCommand {
            instance: "ins_1".into(),
            argv: vec!["true".into()],
            stdin: vec![1],
            ..ExecCommand::default()
        }
    );
    assert!(!old.tty && !old.interactive);
}

#[test]
fn exec_events_keep_their_shape() {
    let exited = ExecEvent::Exited {
        code: Some(3),
        signal: None,
    };
    assert_eq!(
        serde_json::to_value(&exited).unwrap(),
        json!({"type": "exited", "code": 3, "signal": null})
    );
}
