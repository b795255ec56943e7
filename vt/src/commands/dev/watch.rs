//! The threads that feed `vt dev`'s main loop: signals, the controller's
//! event and log streams, a poller of what runs where (which also tries each
//! new endpoint over HTTP until it answers), and image rebuilds. Everything
//! arrives as a [`Msg`] on one channel, so all printing happens in one place.

use super::images::Built;
use super::view::{url, View};
use crate::client::Client;
use std::collections::BTreeSet;
use std::sync::mpsc::Sender;
use std::time::Duration;
use vt_control::endpoint_views::EndpointView;
use vt_control::views::StatusView;
use vt_plan::events::Event;
use vt_wire::messages::LogLine;

/// Something for the main loop.
#[derive(Debug)]
pub enum Msg {
    /// SIGINT or SIGTERM: stop everything.
    Stop(&'static str),
    /// A fleet event.
    Event(Box<Event>),
    /// An app's log line.
    Log(LogLine),
    /// What runs where now.
    View(Box<View>),
    /// An endpoint answered HTTP for the first time.
    Serving(String),
    /// An image was rebuilt after a change (or failed to).
    Image(Result<Built, String>),
}

/// Sends [`Msg::Stop`] on SIGINT and SIGTERM.
pub fn signals(tx: Sender<Msg>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            if tx.send(Msg::Stop(name)).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Follows `path` (SSE) from `since` (Unix ms), reconnecting while the
/// controller is away, and sends each item through `wrap`.
fn follow<T: serde::de::DeserializeOwned + 'static>(
    client: Client,
    path: &'static str,
    since: u64,
    tx: Sender<Msg>,
    wrap: fn(T) -> Msg,
) {
    std::thread::spawn(move || {
        let mut closed = false;
        while !closed {
            let query = [
                ("since", Some(since.to_string())),
                ("follow", Some("true".to_string())),
            ];
            let _ = client.follow(path, &query, |item: T| {
                closed = closed || tx.send(wrap(item)).is_err();
            });
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

/// Follows the fleet's events and every app's logs from `since` (Unix ms).
pub fn streams(client: &Client, since: u64, tx: &Sender<Msg>) {
    follow(
        client.clone(),
        "/v1/events",
        since,
        tx.clone(),
        |e: Event| Msg::Event(Box::new(e)),
    );
    follow(client.clone(), "/v1/logs", since, tx.clone(), Msg::Log);
}

/// Whether `url` answers HTTP (any status).
fn answers(url: &str) -> bool {
    match ureq::get(url).timeout(Duration::from_secs(1)).call() {
        Ok(_) | Err(ureq::Error::Status(..)) => true,
        Err(ureq::Error::Transport(_)) => false,
    }
}

/// Polls what runs where every 500 ms; tries each endpoint URL with a routed
/// instance until it answers once.
pub fn poll(client: Client, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let mut answered = BTreeSet::new();
        loop {
            let status = client.get::<StatusView>("/v1/status", &[]);
            let endpoints = client.get::<Vec<EndpointView>>("/v1/endpoints", &[]);
            if let (Ok(status), Ok(endpoints)) = (status, endpoints) {
                let untried: Vec<String> = endpoints
                    .iter()
                    .filter(|e| e.instances.iter().any(|i| i.routed))
                    .filter_map(url)
                    .filter(|u| !answered.contains(u))
                    .collect();
                if tx
                    .send(Msg::View(Box::new(View { status, endpoints })))
                    .is_err()
                {
                    return;
                }
                for u in untried {
                    if answers(&format!("{u}/")) {
                        answered.insert(u.clone());
                        if tx.send(Msg::Serving(u)).is_err() {
                            return;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}
