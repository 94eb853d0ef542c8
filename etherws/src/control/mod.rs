//! The control API: JSON-RPC 2.0 over HTTP POST, method for method and error code for error
//! code what etherws 1.3 answers, so its `ctl` and scripts written against it keep working.
//!
//! Hand-written rather than built on a JSON-RPC framework because compatibility is in the
//! details: a parse error, a wrong version and an unknown namespace each have their own code,
//! every failure of a method itself is `-32602 Invalid params`, and `error.data` is a one-line
//! reason.

pub(crate) mod guard;
mod methods;
pub(crate) mod metrics;
mod rates;
pub(crate) mod status;
mod summary;

use serde_json::{Value, json};

pub(crate) use methods::{Control, ReloadAsk};

/// Namespace every method name starts with.
pub(crate) const NAMESPACE: &str = "etherws.control.";

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: &'static str,
    pub(crate) data: String,
}

impl RpcError {
    pub(crate) fn parse(data: impl Into<String>) -> Self {
        RpcError {
            code: -32700,
            message: "Parse error",
            data: data.into(),
        }
    }
    pub(crate) fn invalid_request(data: impl Into<String>) -> Self {
        RpcError {
            code: -32600,
            message: "Invalid Request",
            data: data.into(),
        }
    }
    pub(crate) fn method_not_found(data: impl Into<String>) -> Self {
        RpcError {
            code: -32601,
            message: "Method not found",
            data: data.into(),
        }
    }
    pub(crate) fn invalid_params(data: impl Into<String>) -> Self {
        RpcError {
            code: -32602,
            message: "Invalid params",
            data: data.into(),
        }
    }
    pub(crate) fn internal(data: impl Into<String>) -> Self {
        RpcError {
            code: -32603,
            message: "Internal error",
            data: data.into(),
        }
    }
}

/// Builds the response envelope; `id` is echoed (null when the request had none or was
/// unreadable).
pub(crate) fn response(id: Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        // Moved in, not copied as `json!` would (a `listPort` of thousands of ports).
        Ok(result) => Value::Object(serde_json::Map::from_iter([
            ("jsonrpc".to_string(), json!("2.0")),
            ("id".to_string(), id),
            ("result".to_string(), result),
        ])),
        Err(e) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": e.code, "message": e.message, "data": e.data},
        }),
    }
}

/// A request that passed the envelope checks.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) id: Value,
    /// Method name without the namespace.
    pub(crate) method: String,
    pub(crate) params: Value,
}

/// Checks the envelope of a request body: JSON, an object, version "2.0", a method in our
/// namespace. Errors carry the id when one could be read.
pub(crate) fn parse_call(body: &[u8]) -> Result<Call, (Value, RpcError)> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| (Value::Null, RpcError::parse(format!("not JSON: {e}"))))?;
    let Value::Object(obj) = req else {
        return Err((
            Value::Null,
            RpcError::invalid_request("request is not a JSON object"),
        ));
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let err = |e| Err((id.clone(), e));
    match obj.get("jsonrpc") {
        None => return err(RpcError::invalid_request("missing \"jsonrpc\"")),
        Some(Value::String(v)) if v == "2.0" => {}
        Some(v) => {
            return err(RpcError::invalid_request(format!(
                "Invalid JSON-RPC version: {v}"
            )));
        }
    }
    let method = match obj.get("method") {
        None => return err(RpcError::invalid_request("missing \"method\"")),
        Some(Value::String(m)) => m,
        Some(m) => {
            return err(RpcError::invalid_request(format!(
                "method is not a string: {m}"
            )));
        }
    };
    let Some(name) = method.strip_prefix(NAMESPACE) else {
        return err(RpcError::method_not_found(format!(
            "Invalid method namespace: {method}"
        )));
    };
    Ok(Call {
        id: id.clone(),
        method: name.to_string(),
        params: obj.get("params").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> (Value, i64) {
        let (id, e) = parse_call(body.as_bytes()).unwrap_err();
        (id, e.code)
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(code("{not json"), (Value::Null, -32700));
        assert_eq!(code(""), (Value::Null, -32700));
        assert_eq!(code("[]"), (Value::Null, -32600));
        assert_eq!(code("42"), (Value::Null, -32600));
        assert_eq!(
            code(r#"{"method":"etherws.control.listPort","id":3}"#),
            (json!(3), -32600)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","method":"etherws.control.listPort","id":"x"}"#),
            (json!("x"), -32600)
        );
        assert_eq!(
            code(r#"{"jsonrpc":2.0,"method":"etherws.control.listPort"}"#).1,
            -32600
        );
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), (json!(1), -32600));
        assert_eq!(code(r#"{"jsonrpc":"2.0","method":7,"id":1}"#).1, -32600);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"other.listPort","id":1}"#),
            (json!(1), -32601)
        );
    }

    #[test]
    fn good_envelope() {
        let c = parse_call(
            br#"{"jsonrpc":"2.0","method":"etherws.control.setPort","params":{"port":1},"id":9}"#,
        )
        .unwrap();
        assert_eq!(c.id, json!(9));
        assert_eq!(c.method, "setPort");
        assert_eq!(c.params, json!({"port": 1}));
    }

    #[test]
    fn response_shapes() {
        assert_eq!(
            response(json!(1), Ok(json!({"entries": []}))),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"entries": []}})
        );
        assert_eq!(
            response(Value::Null, Err(RpcError::parse("x"))),
            json!({"jsonrpc": "2.0", "id": null,
                   "error": {"code": -32700, "message": "Parse error", "data": "x"}})
        );
    }
}
