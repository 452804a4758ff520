//! The HTTP conventions every route follows (docs/protocol.md §2.1): `HEAD` wherever `GET`, 405
//! with `Allow` for a known path asked with another method, a JSON 404 for unknown paths, CORS for
//! `/api/*` limited to `--allowed-origins`, and `Cache-Control: no-store` on API answers.
//!
//! Routes are declared with [`get`] and [`post`] rather than `web::get()`, so that none can forget
//! `HEAD` or the 405.

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, ResponseError, web};

use super::error::HttpError;

/// How long a browser may cache an answered preflight.
const PREFLIGHT_MAX_AGE_SECS: usize = 600;

/// The server API's key header (`/api/server/*`).
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// A resource answering `GET` and `HEAD` with `handler` (actix-web sends the headers of a `HEAD`
/// answer without its body), and 405 to every other method.
pub fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| method_not_allowed("GET, HEAD")))
}

/// A resource answering `POST` with `handler`, and 405 to every other method.
pub fn post<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(|| method_not_allowed("POST")))
}

/// A resource answering `GET` only, for the WebSocket upgrade (a `HEAD` cannot upgrade).
pub fn get_only<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(|| method_not_allowed("GET")))
}

async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, HttpError> {
    Err(HttpError::MethodNotAllowed { allow })
}

/// The answer to a path no route knows: 404 `not_found` with the JSON error body.
pub async fn not_found() -> Result<HttpResponse, HttpError> {
    Err(HttpError::NotFound("no such path".into()))
}

/// `Cache-Control: no-store` (unless the handler chose otherwise) and `nosniff`, for answers that
/// are data, not files.
pub fn api_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CACHE_CONTROL, "no-store"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
}

/// Whether `origin` (an `Origin` header's value) is one of `allowed` (already trimmed of a
/// trailing `/`); compared without regard to case, as scheme and host are.
pub fn origin_listed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// CORS for `/api/*`: preflights and actual requests from the `allowed` origins get the CORS
/// headers; requests from other origins are served without them (a browser then refuses to show
/// the answer to the page), and their preflights are refused. No origins: no CORS at all.
pub fn cors(allowed: &[String]) -> Condition<Cors> {
    let origins = allowed.to_vec();
    let cors = Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|origin| origin_listed(origin, &origins))
        })
        .allowed_methods([Method::GET, Method::HEAD, Method::POST])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_API_KEY])
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    Condition::new(!allowed.is_empty(), cors)
}

/// Whether a request is a CORS preflight.
fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Wrapped around [`cors`]: a refused preflight (actix-cors answers 400 in plain text) becomes
/// 403 `forbidden` with the JSON error body, like every other error.
pub async fn refused_preflight_as_json<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: actix_web::middleware::Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let preflight = is_preflight(&req);
    let response = next.call(req).await?;
    if preflight && response.status() == StatusCode::BAD_REQUEST {
        let error = HttpError::CorsRefused;
        return Ok(response.into_response(error.error_response()));
    }
    Ok(response.map_into_boxed_body())
}

/// The scope of every `/api/*` route: CORS, API headers, and the JSON 404 for unknown paths.
pub fn api_scope<F>(allowed_origins: &[String], routes: F) -> impl HttpServiceFactory + use<F>
where
    F: FnOnce(&mut web::ServiceConfig),
{
    web::scope("/api")
        .configure(routes)
        .default_service(web::to(not_found))
        .wrap(api_headers())
        .wrap(cors(allowed_origins))
        .wrap(actix_web::middleware::from_fn(refused_preflight_as_json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_without_case_or_trailing_slash() {
        let allowed = vec!["https://app.example".to_owned()];
        assert!(origin_listed("https://app.example", &allowed));
        assert!(origin_listed("HTTPS://App.Example/", &allowed));
        assert!(!origin_listed("https://app.example.evil", &allowed));
        assert!(!origin_listed("http://app.example", &allowed));
        assert!(!origin_listed("https://app.example", &[]));
    }
}
