//! The demo page at `GET /` and its files under `/assets/`.
//!
//! It exists so that anyone can try rollcall with nothing but the binary: open
//! `http://127.0.0.1:8080/?session=demo&name=Ada` in two tabs and watch the two lists, the leader
//! and the messages. Every file is compiled into the binary (`include_str!`), so no Node and no
//! other server is needed at run time. The page is built on the JavaScript client library
//! (`clients/js`, npm package `rollcall-client`): its module files are served here unchanged
//! under their own names and the page imports them through an import map, so the page runs the
//! library's own code rather than a copy of its logic. The library has no build step for the
//! browser (JavaScript checked by `tsc`), so what is served is the source itself.
//!
//! The page and its files carry a `Content-Security-Policy` that allows this origin only: scripts,
//! styles and images from `/assets/`, WebSockets to this host, no framing. Its one inline script,
//! the import map, is allowed by its SHA-256 hash, computed here from the HTML that is served.

use std::sync::LazyLock;

use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::HttpError;

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// One file served under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page's own files, then every module of the client library (`clients/js/src`).
const ASSETS: &[Asset] = &[
    Asset {
        name: "page.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/page/page.js"),
    },
    Asset {
        name: "page.css",
        content_type: CSS,
        body: include_str!("../../clients/js/page/page.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: SVG,
        body: include_str!("../../clients/js/page/favicon.svg"),
    },
    Asset {
        name: "index.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/index.js"),
    },
    Asset {
        name: "client.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/client.js"),
    },
    Asset {
        name: "session.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/session.js"),
    },
    Asset {
        name: "request.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/request.js"),
    },
    Asset {
        name: "transport.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/transport.js"),
    },
    Asset {
        name: "view.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/view.js"),
    },
    Asset {
        name: "backoff.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/backoff.js"),
    },
    Asset {
        name: "emitter.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/emitter.js"),
    },
    Asset {
        name: "errors.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../clients/js/src/errors.js"),
    },
];

const INDEX: &str = include_str!("../../clients/js/page/index.html");

fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The import map of [`INDEX`]: the text between its `<script type="importmap">` and `</script>`.
fn inline_import_map(html: &str) -> Option<&str> {
    let start = html.find(IMPORT_MAP_OPEN)? + IMPORT_MAP_OPEN.len();
    let len = html[start..].find("</script>")?;
    Some(&html[start..start + len])
}

const IMPORT_MAP_OPEN: &str = r#"<script type="importmap">"#;

/// `script-src` of the policy: this origin, and the page's import map by its hash.
static SCRIPT_SRC: LazyLock<String> = LazyLock::new(|| match inline_import_map(INDEX) {
    Some(map) => {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map));
        format!("script-src 'self' 'sha256-{hash}'")
    }
    None => "script-src 'self'".to_owned(),
});

/// Whether `host` (a `Host` header) can go into the policy as it is: a name or address and a
/// port, nothing that could end a directive or add a source.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// The policy of the page and its files. `connect-src` names this host's WebSocket origins
/// (`'self'` covers them in current browsers, not in older ones).
fn content_security_policy(host: &str) -> String {
    let websocket = if plain_host(host) {
        format!(" ws://{host} wss://{host}")
    } else {
        String::new()
    };
    format!(
        "default-src 'self'; {}; style-src 'self'; img-src 'self'; \
         connect-src 'self'{websocket}; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'; object-src 'none'",
        *SCRIPT_SRC
    )
}

fn file_response(
    req: &HttpRequest,
    content_type: &'static str,
    body: &'static str,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // The files change with the binary; revalidating keeps a browser from mixing versions.
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            CONTENT_SECURITY_POLICY,
            content_security_policy(req.connection_info().host()),
        ))
        .insert_header((REFERRER_POLICY, "no-referrer"))
        // For browsers older than `frame-ancestors`.
        .insert_header((X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

/// `GET /`: the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    file_response(&req, HTML, INDEX)
}

/// `GET /assets/{file}`: one of [`ASSETS`], else 404 `not_found`.
pub async fn assets(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, HttpError> {
    match asset(file.as_str()) {
        Some(a) => Ok(file_response(&req, a.content_type, a.body)),
        None => Err(HttpError::NotFound("no such asset".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The relative module specifiers (`from "./x.js"`) of a JavaScript file.
    fn relative_imports(source: &str) -> Vec<&str> {
        source
            .split("from \"./")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    #[test]
    fn every_module_of_the_library_is_served_unchanged() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js/src");
        let entries = std::fs::read_dir(dir).expect("clients/js/src is readable");
        let mut seen = 0;
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("js") {
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name");
            let served = asset(name).unwrap_or_else(|| {
                panic!("clients/js/src/{name} is not served under /assets/: add it to ASSETS")
            });
            let on_disk = std::fs::read_to_string(&path).expect("the module is readable");
            assert_eq!(
                served.body, on_disk,
                "{name} is served as it is in clients/js/src"
            );
            assert_eq!(served.content_type, JAVASCRIPT);
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} modules found in {dir}");
    }

    #[test]
    fn every_relative_import_of_a_served_module_is_served() {
        for a in ASSETS.iter().filter(|a| a.content_type == JAVASCRIPT) {
            for import in relative_imports(a.body) {
                assert!(
                    asset(import).is_some(),
                    "{} imports ./{import}, which /assets/ does not serve",
                    a.name
                );
            }
        }
    }

    #[test]
    fn the_page_loads_the_library_through_its_import_map() {
        assert!(INDEX.contains(r#""rollcall-client": "/assets/index.js""#));
        assert!(INDEX.contains(r#"src="/assets/page.js""#));
        assert!(INDEX.contains(r#"href="/assets/page.css""#));
        assert!(asset("page.js").is_some_and(|a| a.body.contains("from \"rollcall-client\"")));
        assert!(INDEX.contains(r#"href="/assets/favicon.svg""#));
    }

    #[test]
    fn the_policy_allows_the_import_map_by_its_hash_and_nothing_else_inline() {
        let map = inline_import_map(INDEX).expect("the page has an import map");
        assert!(map.contains("rollcall-client"), "{map}");
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map));
        let policy = content_security_policy("127.0.0.1:8080");
        assert!(policy.contains(&format!("'sha256-{hash}'")), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(
            policy.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"),
            "{policy}"
        );
        // One inline script only (the import map), no inline style or event handler attributes.
        assert_eq!(
            INDEX.matches("<script").count(),
            2,
            "the import map and page.js"
        );
        assert!(INDEX.contains(r#"<script type="module" src="/assets/page.js"></script>"#));
        for inline in [
            "<style",
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!INDEX.contains(inline), "the page has inline {inline:?}");
        }
    }

    #[test]
    fn a_host_that_could_change_the_policy_is_left_out() {
        for host in ["evil; script-src *", "a b", "", "x'y"] {
            let policy = content_security_policy(host);
            assert!(
                policy.contains("connect-src 'self'; "),
                "{host:?}: {policy}"
            );
        }
        assert!(plain_host("[::1]:8080"));
        assert!(plain_host("rollcall.example"));
    }
}
