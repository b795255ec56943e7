//! The controller's HTTP API from the CLI's side: address and token from
//! flags, environment or the config file, JSON in, [`CliError`] out.

use crate::error::{CliError, ErrorCode, Exit};
use serde::de::DeserializeOwned;
use std::io::BufRead;
use std::path::PathBuf;

/// Where the controller is and how to authenticate.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    /// HTTP with the TLS setup below.
    agent: ureq::Agent,
    /// The system's roots plus the fleet CA given (`--ca`, `VT_CA`, the
    /// config file's `ca`).
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Client {
    /// The address, never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// `~/.config/vt/config.json` (or `$XDG_CONFIG_HOME/vt/config.json`).
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct ConfigFile {
    /// The controller's API address.
    pub controller: Option<String>,
    /// The API token.
    pub token: Option<String>,
    /// The CA bundle the controller's certificate is checked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// `~/.config/vt/config.json`'s path (`vt login` writes it).
pub fn config_file() -> Option<PathBuf> {
    config_path()
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vt").join("config.json"))
}

/// `host[:port]/...`'s `host:port`, with `default` when it names no port.
fn with_port(rest: &str, default: u16) -> String {
    let authority = rest.split('/').next().unwrap_or(rest);
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !host.ends_with(':')
            && port.parse::<u16>().is_ok()
            && (!host.starts_with('[') || host.ends_with(']'))
    });
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{default}")
    }
}

/// A JSON answer, decoded.
fn decode<T: DeserializeOwned>(response: ureq::Response) -> Result<T, CliError> {
    response.into_json().map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Controller,
            format!("the controller's answer is not valid: {e}"),
        )
    })
}

impl Client {
    /// From the command line's `--controller`, `--token` and `--ca`.
    pub fn from_api(api: &crate::cli::Api) -> Result<Client, CliError> {
        Client::new(
            api.controller.as_deref(),
            api.token.as_deref(),
            api.ca.as_deref(),
        )
    }

    /// From `--controller`/`--token`/`--ca` (which clap also fills from
    /// `VT_CONTROLLER`, `VT_TOKEN`, `VT_CA`), falling back to the config file.
    pub fn new(
        controller: Option<&str>,
        token: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> Result<Client, CliError> {
        let file: ConfigFile = config_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let base = controller.map(str::to_string).or(file.controller).ok_or_else(|| {
            CliError::new(Exit::Usage, ErrorCode::NoController, "no controller address")
                .hint("pass --controller http://HOST:PORT, set VT_CONTROLLER, or put {\"controller\", \"token\"} in ~/.config/vt/config.json")
        })?;
        let token = token.map(str::to_string).or(file.token).unwrap_or_default();
        let ca = ca.map(std::path::Path::to_path_buf).or(file.ca);
        let tls = vt_wire::trust::client_config(ca.as_deref()).map_err(|e| {
            CliError::new(
                Exit::Usage,
                ErrorCode::Usage,
                format!("the CA bundle cannot be used: {}", vt_wire::error_chain(&e)),
            )
            .hint("pass --ca with the fleet's CA (the state directory's ca.pem), or set VT_CA")
        })?;
        let agent = ureq::AgentBuilder::new().tls_config(tls.clone()).build();
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            tls,
        })
    }

    fn request(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> Result<ureq::Response, CliError> {
        let mut req = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token));
        for (key, value) in query {
            if let Some(value) = value {
                req = req.query(key, value);
            }
        }
        self.answer(req.call())
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON answer.
    pub fn post<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token));
        decode(self.answer(req.send_json(body))?)
    }

    /// Sends `DELETE path` and decodes the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let req = self
            .agent
            .delete(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token));
        decode(self.answer(req.call())?)
    }

    fn answer(
        &self,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, CliError> {
        result.map_err(|e| match e {
            ureq::Error::Status(status, resp) => {
                status_error(status, resp.into_json().unwrap_or_default())
            }
            ureq::Error::Transport(t) => self.unreachable(t),
        })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> CliError {
        let message = format!("cannot reach the controller at {}: {e}", self.base);
        let hint = if message.contains("certificate") || message.contains("UnknownIssuer") {
            "the controller's certificate is not trusted: pass --ca with the fleet's CA (ca.pem in \
             its state directory), set VT_CA, or run `vt login`"
        } else {
            "is `vt fleet run` running? check --controller / VT_CONTROLLER"
        };
        CliError::new(Exit::Failure, ErrorCode::Unreachable, message).hint(hint)
    }

    /// Opens a WebSocket to `path?query` (`query` already encoded), with the token.
    pub fn websocket(
        &self,
        path: &str,
        query: &str,
    ) -> Result<
        tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
        CliError,
    > {
        use tungstenite::client::IntoClientRequest;
        let (url, authority) = match self.base.split_once("://") {
            Some(("http", rest)) => (format!("ws://{rest}{path}?{query}"), with_port(rest, 80)),
            Some(("https", rest)) => (format!("wss://{rest}{path}?{query}"), with_port(rest, 443)),
            _ => {
                return Err(CliError::new(
                    Exit::Usage,
                    ErrorCode::Usage,
                    format!(
                        "the controller's address {} is not an http:// or https:// URL",
                        self.base
                    ),
                ))
            }
        };
        let mut request = url.into_client_request().map_err(|e| self.unreachable(e))?;
        let token = format!("Bearer {}", self.token).parse().map_err(|_| {
            CliError::new(
                Exit::Usage,
                ErrorCode::Usage,
                "the API token is not a valid header value",
            )
        })?;
        request.headers_mut().insert("authorization", token);
        let tcp = std::net::TcpStream::connect(&authority).map_err(|e| self.unreachable(e))?;
        let connector = tungstenite::Connector::Rustls(self.tls.clone());
        let connected = tungstenite::client_tls_with_config(request, tcp, None, Some(connector))
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => e,
                tungstenite::HandshakeError::Interrupted(_) => {
                    tungstenite::Error::Io(std::io::ErrorKind::WouldBlock.into())
                }
            });
        match connected {
            Ok((socket, _)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                Err(status_error(response.status().as_u16(), body))
            }
            Err(e) => Err(self.unreachable(e)),
        }
    }

    /// GETs `path` and decodes the JSON answer.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> Result<T, CliError> {
        decode(self.request(path, query)?)
    }

    /// GETs a server-sent-events stream and calls `each` with every event's data.
    pub fn follow<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
        mut each: impl FnMut(T),
    ) -> Result<(), CliError> {
        let reader = std::io::BufReader::new(self.request(path, query)?.into_reader());
        // The controller ends a stream with an `error` event (the token was revoked).
        let mut kind = String::new();
        for line in reader.lines() {
            let line = line.map_err(|e| {
                CliError::new(
                    Exit::Failure,
                    ErrorCode::Unreachable,
                    format!("the event stream broke: {e}"),
                )
            })?;
            if let Some(name) = line.strip_prefix("event:") {
                kind = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if kind == "error" {
                    let body = serde_json::from_str(data.trim()).unwrap_or_default();
                    return Err(status_error(401, body));
                }
                if let Ok(value) = serde_json::from_str(data.trim()) {
                    each(value);
                }
            }
        }
        Ok(())
    }
}

/// The error for a refused request: the controller's code, message and hint.
fn status_error(status: u16, body: serde_json::Value) -> CliError {
    let message = body["message"]
        .as_str()
        .unwrap_or("the controller refused the request")
        .to_string();
    // The API's own stable code, when it gives one.
    let fallback = match status {
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        400 => ErrorCode::Usage,
        _ => ErrorCode::Controller,
    };
    // A code this build does not know (a newer controller's) is kept as given.
    let code = body["code"].as_str().map_or(fallback, ErrorCode::parse);
    let exit = match status {
        404 => Exit::NotFound,
        422 => Exit::Failure,
        400 => Exit::Usage,
        _ => Exit::Failure,
    };
    let err = CliError::new(exit, code, message);
    match body["hint"].as_str() {
        Some(hint) => err.hint(hint),
        None => err,
    }
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{format_time, status_error};
    use crate::error::{ErrorCode, Exit};
    use serde_json::json;

    #[test]
    fn refusals_keep_the_controllers_code_even_an_unknown_one() {
        let e = status_error(
            409,
            json!({"code": "E_ATTACHED", "message": "attached", "hint": "stop it"}),
        );
        assert_eq!(
            (e.code, e.exit, e.message.as_str(), e.hint.as_deref()),
            (
                ErrorCode::Attached,
                Exit::Failure,
                "attached",
                Some("stop it")
            )
        );
        let e = status_error(500, json!({"code": "E_FROM_A_NEWER_CONTROLLER"}));
        assert_eq!(e.code.as_str(), "E_FROM_A_NEWER_CONTROLLER");
        let e = status_error(404, json!(null));
        assert_eq!((e.code, e.exit), (ErrorCode::NotFound, Exit::NotFound));
        assert_eq!(status_error(401, json!({})).code, ErrorCode::Unauthorized);
    }

    #[test]
    fn formats_unix_milliseconds() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000_000), "2026-11-18 11:06:40");
    }
}
