//! A small client of the controller's HTTP API, for polling (much cheaper
//! than starting `vt` every 50 ms) and for requests the CLI does not make
//! (no token, the webhook).

use serde_json::Value;
use std::time::Duration;

/// The controller's HTTP API at one address, with or without a bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// An answer: HTTP status and JSON body (`Null` when the body is not JSON).
pub type Answer = (u16, Value);

impl Api {
    /// A client of `base` (`https://127.0.0.1:PORT`, or `http://` for a
    /// `vt dev` stack), trusting the system's roots and the CA bundle `ca`.
    pub fn new(base: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> Api {
        let tls = vt_wire::trust::client_config(ca).expect("the CA bundle");
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .tls_config(tls)
                .build(),
        }
    }

    /// The same controller with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<Answer, String> {
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
        };
        let status = response.status();
        let text = response.into_string().map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET PATH` (with its query); `Err` when the controller cannot be reached.
    pub fn try_get(&self, path: &str) -> Result<Answer, String> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.set("authorization", &format!("Bearer {token}"));
        }
        Self::answer(req.call())
    }

    /// `METHOD PATH` with the token and a JSON body (`{}` for none).
    pub fn call(&self, method: &str, path: &str, body: &Value) -> Result<Answer, String> {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.set("authorization", &format!("Bearer {token}"));
        }
        let result = if method == "GET" || method == "DELETE" {
            req.call()
        } else {
            req.send_json(body)
        };
        Self::answer(result)
    }

    /// `GET PATH`, which must answer 200.
    pub fn get(&self, path: &str) -> Value {
        match self.try_get(path) {
            Ok((200, body)) => body,
            other => panic!("GET {path}: {other:?}"),
        }
    }

    /// `GET /v1/status`, `None` while the controller is unreachable.
    pub fn try_status(&self) -> Option<Value> {
        match self.try_get("/v1/status") {
            Ok((200, body)) => Some(body),
            Ok(other) => panic!("GET /v1/status: {other:?}"),
            Err(_) => None,
        }
    }

    /// `POST PATH` with headers and a body (no bearer token: the webhook signs instead).
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut req = self.agent.post(&format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.set(name, value);
        }
        Self::answer(req.send_bytes(body)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }
}
