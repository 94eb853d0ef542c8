//! The status page: a live view of the ports, their traffic and the forwarding table, served by
//! the control listener at `GET /status` (with `/status.js` and `/status.css`).
//!
//! The page is static: HTML, script and style are compiled into the binary (no CDN, no external
//! font, it works offline), and the script reads everything it shows by POSTing JSON-RPC
//! (`statusSummary`, control/summary.rs: one page of ports, sorted and filtered on the switch,
//! the top talkers and the pinned ports, so that a poll is sized to the screen and not to the
//! switch) to the control path, which the page learns from a
//! `<meta name="etherws-ctlpath">` filled in here. So it holds no data and no secret, and it
//! passes the same checks as any control request: the server admits the three paths exactly as
//! it admits `/metrics` (guard, `--ctlhtpasswd`, TLS), and the script's POSTs carry
//! `Content-Type: application/json` and the page's own `Origin`.
//!
//! What a peer controls (user names, targets, paths) reaches the page only through
//! `textContent` and `createElement`, never as markup, and every answer carries a strict
//! Content-Security-Policy (scripts and styles from the page's origin only, no inline code, no
//! framing), so even a string that slipped through could not run.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page.
pub(crate) const PAGE_PATH: &str = "/status";
/// Its script.
pub(crate) const SCRIPT_PATH: &str = "/status.js";
/// Its style sheet.
pub(crate) const STYLE_PATH: &str = "/status.css";
/// The paths the status page takes on the control listener (reserved like `/metrics`).
pub(crate) const PATHS: [&str; 3] = [PAGE_PATH, SCRIPT_PATH, STYLE_PATH];

/// The policy every answer on the three paths carries: the page's own script, style and
/// JSON-RPC endpoint, nothing else, and no framing.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = include_str!("status/status.html");
const SCRIPT: &str = include_str!("status/status.js");
const STYLE: &str = include_str!("status/status.css");

/// Where the page's template takes the control path (HTML-escaped).
const CTLPATH_SLOT: &str = "{{ctlpath}}";
/// Where it takes the switch's version.
const VERSION_SLOT: &str = "{{version}}";

/// The status page of one control listener, its template filled in once.
#[derive(Debug, Clone)]
pub(crate) struct StatusPage {
    page: String,
}

impl StatusPage {
    /// The page for a control API at `ctlpath`.
    pub(crate) fn new(ctlpath: &str) -> StatusPage {
        StatusPage {
            page: PAGE
                .replace(CTLPATH_SLOT, &html_escape(ctlpath))
                .replace(VERSION_SLOT, &html_escape(env!("CARGO_PKG_VERSION"))),
        }
    }

    /// The answer for one of [`PATHS`] (the request already admitted), without the security
    /// headers [`secured`] adds.
    pub(crate) fn asset(&self, path: &str) -> Response {
        let (content_type, body) = match path {
            PAGE_PATH => ("text/html; charset=utf-8", self.page.clone()),
            SCRIPT_PATH => ("text/javascript; charset=utf-8", SCRIPT.to_string()),
            STYLE_PATH => ("text/css; charset=utf-8", STYLE.to_string()),
            _ => return (StatusCode::NOT_FOUND, "Not found\n").into_response(),
        };
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    }
}

/// The headers every answer on the status paths carries, a refusal (`401`, `403`, `421`)
/// included: the policy, no framing, no MIME sniffing, no referrer, no caching.
pub(crate) const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// `answer` with [`SECURITY_HEADERS`] (replacing any of the same name).
pub(crate) fn secured(mut answer: Response) -> Response {
    let headers = answer.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    answer
}

/// `s` safe inside HTML text or a quoted attribute value.
pub(crate) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape(r#"/c"t<l>&'x"#),
            "/c&quot;t&lt;l&gt;&amp;&#39;x"
        );
        assert_eq!(html_escape("/ctl"), "/ctl");
    }

    #[tokio::test]
    async fn the_page_learns_the_control_path_escaped() {
        let page = StatusPage::new(r#"/a"><script>x</script>"#);
        let r = page.asset(PAGE_PATH);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let html = body(r).await;
        assert!(
            html.contains(
                r#"<meta name="etherws-ctlpath" content="/a&quot;&gt;&lt;script&gt;x&lt;/script&gt;">"#
            ),
            "{html}"
        );
        assert!(!html.contains("{{"), "every slot filled: {html}");
        assert!(!html.contains("<script>x"), "{html}");
    }

    #[tokio::test]
    async fn script_and_style_have_their_types() {
        let page = StatusPage::new("/ctl");
        for (path, ct, text) in [
            (SCRIPT_PATH, "text/javascript; charset=utf-8", SCRIPT),
            (STYLE_PATH, "text/css; charset=utf-8", STYLE),
        ] {
            let r = page.asset(path);
            assert_eq!(r.headers()[header::CONTENT_TYPE], ct, "{path}");
            assert_eq!(body(r).await, text, "{path}");
        }
        assert_eq!(page.asset("/other").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn security_headers_are_added_to_any_answer() {
        let refused = (StatusCode::UNAUTHORIZED, "no\n").into_response();
        let r = secured(refused);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(
            !r.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-"))
        );
    }

    /// The script builds the page with DOM calls only: nothing it shows is parsed as markup or
    /// run as code, and it loads nothing from elsewhere.
    #[test]
    fn the_assets_never_parse_data_as_markup_and_stay_offline() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "createContextualFragment",
            "DOMParser",
        ] {
            assert!(!SCRIPT.contains(sink), "status.js uses {sink}");
        }
        for (name, text) in [("html", PAGE), ("js", SCRIPT), ("css", STYLE)] {
            assert!(
                !text.contains("http://"),
                "status.{name} names an http:// URL"
            );
            assert!(
                !text.contains("https://"),
                "status.{name} names an https:// URL"
            );
            assert!(!text.contains("@import"), "status.{name} imports");
        }
        // No inline script or style, which the policy would refuse anyway.
        assert!(!PAGE.contains("<style"));
        assert!(!PAGE.contains("style="));
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(PAGE.contains(r#"<script src="status.js" defer></script>"#));
    }
}
