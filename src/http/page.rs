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

use actix_web::http::header::{CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use actix_web::{HttpResponse, web};

use super::error::HttpError;

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

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

fn file_response(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // The files change with the binary; revalidating keeps a browser from mixing versions.
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header((X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body)
}

/// `GET /`: the page.
pub async fn index() -> HttpResponse {
    file_response(HTML, INDEX)
}

/// `GET /assets/{file}`: one of [`ASSETS`], else 404 `not_found`.
pub async fn assets(file: web::Path<String>) -> Result<HttpResponse, HttpError> {
    match asset(file.as_str()) {
        Some(a) => Ok(file_response(a.content_type, a.body)),
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
    }
}
