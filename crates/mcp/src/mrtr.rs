//! Multi-round requests (SEP-2322, protocol 2026-07-28): a tool or prompt
//! that needs the client's help (an LLM completion, user input, the client's
//! roots) answers with [`InputNeeded`] instead of a result; the client
//! fulfils the requests and retries with their responses, which the handler
//! reads from its [`InputRound`].
//!
//! The same handler serves both eras: on a 2026-07-28 request the server
//! answers with an `InputRequiredResult` (its `requestState` sealed, see
//! below); on a 2025-11-25 session, which has server-to-client requests, the
//! server asks the client itself (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) and runs the handler again with the
//! answers, up to [`MAX_ROUNDS`] rounds.
//!
//! `requestState` travels through the client, so it is untrusted: the server
//! seals the handler's state with a signature of a key only it holds, bound
//! to the method, the tool or prompt name and the caller, and valid for
//! [`STATE_TTL`]. A tampered, foreign, expired or misplaced state is an
//! `invalid params` error.
#![allow(deprecated)] // rmcp marks sampling and roots deprecated (SEP-2577).

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use p2p_foundation_identity::{Keypair, Signature, unix_millis};
use rmcp::{
    ErrorData,
    model::{
        ClientCapabilities, CreateMessageRequestParams, CreateMessageResult, ElicitResult,
        InputRequest, InputRequests, ListRootsResult,
    },
};
use serde_json::{Value, json};

use crate::hex;

/// Most rounds the server drives itself on a 2025-11-25 session (the SDKs'
/// default limit for clients driving 2026-07-28 rounds).
pub const MAX_ROUNDS: usize = rmcp::model::DEFAULT_MRTR_MAX_ROUNDS;

/// How long a sealed `requestState` stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);

/// Longest `requestState` accepted (checked before decoding).
pub const MAX_STATE_LEN: usize = 64 * 1024;

/// What the client answered in earlier rounds of this request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputRound {
    responses: BTreeMap<String, Value>,
    state: Option<Value>,
}

impl InputRound {
    /// The first round: no responses, no state.
    pub fn first() -> Self {
        Self::default()
    }

    /// A round with these responses and (already verified) state.
    pub fn new(responses: BTreeMap<String, Value>, state: Option<Value>) -> Self {
        Self { responses, state }
    }

    /// Whether the client sent no responses (round one, or a retry without them).
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }

    /// The raw response to the input request named `key`.
    pub fn response(&self, key: &str) -> Option<&Value> {
        self.responses.get(key)
    }

    /// The state the handler attached to its last [`InputNeeded`] (verified).
    pub fn state(&self) -> Option<&Value> {
        self.state.as_ref()
    }

    /// The response to the elicitation named `key`, if present and well formed.
    pub fn elicitation(&self, key: &str) -> Option<ElicitResult> {
        serde_json::from_value(self.responses.get(key)?.clone()).ok()
    }

    /// The response to the sampling request named `key`, if present and well formed.
    pub fn sampling(&self, key: &str) -> Option<CreateMessageResult> {
        serde_json::from_value(self.responses.get(key)?.clone()).ok()
    }

    /// The response to the `roots/list` request named `key`, if present and well formed.
    pub fn roots(&self, key: &str) -> Option<ListRootsResult> {
        serde_json::from_value(self.responses.get(key)?.clone()).ok()
    }
}

/// Requests a handler needs the client to fulfil before it can finish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InputNeeded {
    requests: BTreeMap<String, Value>,
    state: Option<Value>,
}

impl InputNeeded {
    /// No requests yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the user for input shaped by `requested_schema` (`elicitation/create`).
    pub fn elicit(
        mut self,
        key: impl Into<String>,
        message: impl Into<String>,
        requested_schema: Value,
    ) -> Self {
        self.requests.insert(
            key.into(),
            json!({"method": "elicitation/create", "params": {
                "mode": "form", "message": message.into(), "requestedSchema": requested_schema}}),
        );
        self
    }

    /// Ask the client's LLM (`sampling/createMessage`).
    pub fn sample(mut self, key: impl Into<String>, params: CreateMessageRequestParams) -> Self {
        let params = serde_json::to_value(params).unwrap_or_default();
        self.requests.insert(
            key.into(),
            json!({"method": "sampling/createMessage", "params": params}),
        );
        self
    }

    /// Ask for the client's roots (`roots/list`).
    pub fn list_roots(mut self, key: impl Into<String>) -> Self {
        self.requests
            .insert(key.into(), json!({"method": "roots/list", "params": {}}));
        self
    }

    /// Carry `state` to the next round (sealed on the wire, see the module docs).
    pub fn with_state(mut self, state: Value) -> Self {
        self.state = Some(state);
        self
    }

    /// The requests by key, as JSON (`{"method", "params"}`).
    pub fn requests(&self) -> &BTreeMap<String, Value> {
        &self.requests
    }

    /// The state for the next round.
    pub fn state(&self) -> Option<&Value> {
        self.state.as_ref()
    }

    /// The client capabilities these requests need.
    pub fn required_capabilities(&self) -> ClientCapabilities {
        let mut caps = ClientCapabilities::default();
        for r in self.requests.values() {
            match r["method"].as_str() {
                Some("sampling/createMessage") => caps.sampling = Some(Default::default()),
                Some("elicitation/create") => caps.elicitation = Some(Default::default()),
                Some("roots/list") => caps.roots = Some(Default::default()),
                _ => {}
            }
        }
        caps
    }

    /// Fail with `-32021` if `declared` lacks a capability these requests need.
    pub(crate) fn check_capabilities(
        &self,
        declared: Option<&ClientCapabilities>,
    ) -> Result<(), ErrorData> {
        let need = self.required_capabilities();
        let has = |f: fn(&ClientCapabilities) -> bool| declared.is_some_and(f);
        let mut missing = ClientCapabilities::default();
        if need.sampling.is_some() && !has(|c| c.sampling.is_some()) {
            missing.sampling = need.sampling.clone();
        }
        if need.elicitation.is_some() && !has(|c| c.elicitation.is_some()) {
            missing.elicitation = need.elicitation.clone();
        }
        if need.roots.is_some() && !has(|c| c.roots.is_some()) {
            missing.roots = need.roots.clone();
        }
        if missing == ClientCapabilities::default() {
            Ok(())
        } else {
            Err(ErrorData::missing_required_client_capability(missing))
        }
    }

    /// The typed requests (errors if the handler built an invalid one).
    pub(crate) fn typed_requests(&self) -> Result<InputRequests, ErrorData> {
        if self.requests.is_empty() && self.state.is_none() {
            return Err(ErrorData::internal_error(
                "the handler asked for input but named no input request and no state",
                None,
            ));
        }
        self.requests
            .iter()
            .map(|(k, v)| {
                serde_json::from_value::<InputRequest>(v.clone())
                    .map(|r| (k.clone(), r))
                    .map_err(|e| {
                        ErrorData::internal_error(
                            format!("input request '{k}' is invalid: {e}"),
                            None,
                        )
                    })
            })
            .collect()
    }
}

/// What a multi-round handler returns: its result, or the input it needs first.
#[derive(Debug, Clone)]
pub enum Outcome<T, I = InputNeeded> {
    /// Done.
    Complete(T),
    /// The client must fulfil these requests and retry.
    InputRequired(I),
}

impl<T> From<InputNeeded> for Outcome<T> {
    fn from(needed: InputNeeded) -> Self {
        Outcome::InputRequired(needed)
    }
}

impl From<rmcp::model::CallToolResult> for Outcome<rmcp::model::CallToolResult> {
    fn from(result: rmcp::model::CallToolResult) -> Self {
        Outcome::Complete(result)
    }
}

impl From<rmcp::model::GetPromptResult> for Outcome<rmcp::model::GetPromptResult> {
    fn from(result: rmcp::model::GetPromptResult) -> Self {
        Outcome::Complete(result)
    }
}

/// Seals and opens `requestState` with a key only this server holds (the
/// format is in `docs/protocols/mcp.md`). Every [`crate::McpServer`] has one.
pub struct StateSealer {
    key: Keypair,
}

impl Default for StateSealer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSealer").finish_non_exhaustive()
    }
}

fn tampered(why: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("requestState failed integrity verification: {why}"),
        None,
    )
}

impl StateSealer {
    /// A sealer with a fresh random key.
    pub fn new() -> Self {
        Self {
            key: Keypair::generate(),
        }
    }

    /// `hex(payload) "." hex(signature)`, the payload binding scope and expiry.
    pub fn seal(&self, scope: &str, state: &Value, now: SystemTime) -> String {
        let exp = unix_millis(now + STATE_TTL);
        let payload = json!({"scope": scope, "exp": exp, "state": state}).to_string();
        let sig = self.key.sign(payload.as_bytes());
        format!(
            "{}.{}",
            hex::encode(payload.as_bytes()),
            hex::encode(sig.as_bytes())
        )
    }

    /// The state sealed in `token` for `scope`, if the token is intact, was
    /// sealed by this sealer for this scope, and has not expired; otherwise
    /// an `invalid params` error saying why.
    pub fn open(&self, scope: &str, token: &str, now: SystemTime) -> Result<Value, ErrorData> {
        if token.len() > MAX_STATE_LEN {
            return Err(tampered("longer than this server ever issues"));
        }
        let (payload, sig) = token.split_once('.').ok_or_else(|| tampered("malformed"))?;
        let payload = hex::decode(payload).ok_or_else(|| tampered("malformed"))?;
        let sig: [u8; 64] = hex::decode(sig)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| tampered("malformed signature"))?;
        self.key
            .peer_id()
            .verify(&payload, &Signature::from_bytes(sig))
            .map_err(|_| tampered("bad signature (modified, or issued by another server)"))?;
        let v: Value = serde_json::from_slice(&payload).map_err(|_| tampered("malformed"))?;
        if v["scope"].as_str() != Some(scope) {
            return Err(tampered("issued for another request"));
        }
        if v["exp"].as_u64().is_none_or(|exp| exp < unix_millis(now)) {
            return Err(ErrorData::invalid_params(
                "requestState expired: start the request again without it",
                None,
            ));
        }
        Ok(v["state"].clone())
    }
}

/// Ask a 2025-11-25 client one input request directly; its result as JSON.
pub(crate) async fn ask(
    peer: &rmcp::service::Peer<rmcp::RoleServer>,
    request: InputRequest,
) -> Result<Value, ErrorData> {
    use rmcp::model::ServerRequest;
    let (method, request) = match request {
        InputRequest::CreateMessage(r) => (
            "sampling/createMessage",
            ServerRequest::CreateMessageRequest(r),
        ),
        InputRequest::Elicitation(r) => ("elicitation/create", ServerRequest::ElicitRequest(r)),
        InputRequest::ListRoots(r) => ("roots/list", ServerRequest::ListRootsRequest(r)),
        other => {
            return Err(ErrorData::internal_error(
                format!("unsupported input request {other:?}"),
                None,
            ));
        }
    };
    match peer.send_request(request).await {
        Ok(result) => serde_json::to_value(result)
            .map_err(|e| ErrorData::internal_error(format!("{method} result: {e}"), None)),
        Err(rmcp::ServiceError::McpError(e)) => Err(e),
        Err(e) => Err(ErrorData::internal_error(
            format!("{method} failed: {e}"),
            None,
        )),
    }
}

/// Check the client's `inputResponses`: each must be a result object.
pub(crate) fn validate_responses(
    responses: Option<BTreeMap<String, Value>>,
) -> Result<BTreeMap<String, Value>, ErrorData> {
    let responses = responses.unwrap_or_default();
    for (k, v) in &responses {
        if !v.is_object() {
            return Err(ErrorData::invalid_params(
                format!("inputResponses['{k}'] must be a result object"),
                None,
            ));
        }
    }
    Ok(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_round_trips_and_rejects_tampering() {
        let s = StateSealer::new();
        let now = SystemTime::now();
        let token = s.seal("tools/call:a:local", &json!({"step": 2}), now);
        assert_eq!(
            s.open("tools/call:a:local", &token, now).unwrap(),
            json!({"step": 2})
        );
        // Another tool, another caller, a modified token, another server, expiry.
        assert!(s.open("tools/call:b:local", &token, now).is_err());
        let mut bad = token.clone();
        bad.push_str("00");
        assert!(s.open("tools/call:a:local", &bad, now).is_err());
        let flipped = token.replacen('7', "8", 1);
        assert!(flipped == token || s.open("tools/call:a:local", &flipped, now).is_err());
        assert!(
            StateSealer::new()
                .open("tools/call:a:local", &token, now)
                .is_err()
        );
        assert!(
            s.open(
                "tools/call:a:local",
                &token,
                now + STATE_TTL + Duration::from_secs(1)
            )
            .is_err()
        );
        assert!(s.open("x", "nonsense", now).is_err());
        assert!(s.open("x", &"a".repeat(MAX_STATE_LEN + 1), now).is_err());
    }

    proptest::proptest! {
        #[test]
        fn opening_arbitrary_text_never_panics_nor_verifies(text in "\\PC{0,300}", hexish in "[0-9a-f.]{0,300}") {
            let s = StateSealer::new();
            let now = SystemTime::now();
            proptest::prop_assert!(s.open("scope", &text, now).is_err());
            proptest::prop_assert!(s.open("scope", &hexish, now).is_err());
        }

        #[test]
        fn any_changed_digit_breaks_the_seal(state in "\\PC{0,40}", pos in 0usize..10_000, digit in 0u8..16) {
            let s = StateSealer::new();
            let now = SystemTime::now();
            let token = s.seal("scope", &json!(state), now);
            proptest::prop_assert_eq!(s.open("scope", &token, now).unwrap(), json!(state));
            let mut bytes = token.into_bytes();
            let i = pos % bytes.len();
            let new = b"0123456789abcdef"[usize::from(digit)];
            if bytes[i] != b'.' && bytes[i] != new {
                bytes[i] = new;
                let changed = String::from_utf8(bytes).unwrap();
                proptest::prop_assert!(s.open("scope", &changed, now).is_err());
            }
        }
    }

    #[test]
    fn needed_capabilities_are_checked() {
        let n = InputNeeded::new()
            .elicit("e", "name?", json!({"type": "object", "properties": {}}))
            .list_roots("r");
        let mut caps = ClientCapabilities::default();
        caps.elicitation = Some(Default::default());
        let e = n.check_capabilities(Some(&caps)).unwrap_err();
        assert_eq!(
            e.code,
            rmcp::model::ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        );
        let data = e.data.unwrap();
        assert!(data["requiredCapabilities"]["roots"].is_object());
        assert!(data["requiredCapabilities"].get("elicitation").is_none());
        caps.roots = Some(Default::default());
        n.check_capabilities(Some(&caps)).unwrap();
        assert_eq!(n.typed_requests().unwrap().len(), 2);
        assert!(InputNeeded::new().typed_requests().is_err());
    }

    #[test]
    fn responses_must_be_objects() {
        assert!(validate_responses(None).unwrap().is_empty());
        let bad: BTreeMap<String, Value> = [("k".to_owned(), json!(12345))].into();
        assert!(validate_responses(Some(bad)).is_err());
    }
}
