//! Writing a whole JSON answer or an OpenAI-shaped error, with the request's headers; each
//! returns the [`Status`] it answered with, for the access line and the metrics.

use serde::Serialize;

use crate::error::ApiError;
use crate::http::Responder;
use crate::metrics::Status;

/// Owned header pairs as the `&str` pairs the responder takes.
pub(crate) fn headers_ref(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub(crate) fn send_json(
    resp: &mut Responder<'_>,
    status: u16,
    headers: &[(&str, &str)],
    body: &(impl Serialize + ?Sized),
) -> Status {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(e) => {
            let e = ApiError::internal(format!("the answer could not be encoded: {e}"));
            return send_error(resp, headers, &e);
        }
    };
    // A failed write means the client left; there is nobody to tell.
    let _ = resp.send(status, &h, &bytes);
    Status::Http(status)
}

pub(crate) fn send_error(
    resp: &mut Responder<'_>,
    headers: &[(&str, &str)],
    e: &ApiError,
) -> Status {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(ra) = &e.retry_after {
        h.push(("Retry-After", ra.as_str()));
    }
    if e.status == 401 {
        h.push(("WWW-Authenticate", "Bearer"));
    }
    send_json(resp, e.status, &h, &e.body())
}
