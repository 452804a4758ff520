use serde_json::json;

use super::*;

fn claims(sub: &str, exp: u64) -> Claims {
    Claims {
        sub: sub.into(),
        exp,
        name: None,
        sessions: None,
    }
}

/// An HS256 token under "s3cret" with any header fields (besides `alg`) and payload, built by
/// hand.
fn raw(header: serde_json::Value, payload: serde_json::Value) -> String {
    use hmac::Mac;
    let mut header = header;
    header["alg"] = json!("HS256");
    let signed = format!(
        "{}.{}",
        base64_url(header.to_string().as_bytes()),
        base64_url(payload.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("a key");
    mac.update(signed.as_bytes());
    format!("{signed}.{}", base64_url(&mac.finalize().into_bytes()))
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn with(settings: AuthSettings) -> Authenticator {
    Authenticator::from_settings(AuthSettings {
        secret: Some("s3cret".into()),
        ..settings
    })
}

#[tokio::test]
async fn issued_tokens_verify() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let token = auth
        .issue(
            "alice",
            Some("Alice"),
            Some(vec!["a".into()]),
            Duration::from_secs(60),
        )
        .expect("sign");
    let claims = auth.verify(&token).await.expect("verify");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.name.as_deref(), Some("Alice"));
    assert_eq!(claims.sessions, Some(vec!["a".to_owned()]));
}

#[tokio::test]
async fn expired_wrong_secret_and_bad_subject_are_refused() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let now = now();
    let expired = sign_claims("s3cret", &claims("bob", now - 3600)).expect("sign");
    assert_eq!(auth.verify(&expired).await, Err(AuthError::Expired));
    let foreign = sign_claims("other", &claims("bob", now + 3600)).expect("sign");
    assert_eq!(auth.verify(&foreign).await, Err(AuthError::BadSignature));
    let empty = sign_claims("s3cret", &claims("", now + 3600)).expect("sign");
    assert!(matches!(
        auth.verify(&empty).await,
        Err(AuthError::Invalid(_))
    ));
    let long = sign_claims("s3cret", &claims(&"x".repeat(129), now + 3600)).expect("sign");
    assert!(matches!(
        auth.verify(&long).await,
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        auth.verify("not.a.token").await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let token = raw(json!({}), json!({"sub": "carol"}));
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn nbf_and_exp_are_enforced_within_the_leeway_only() {
    let auth = with(AuthSettings {
        leeway_secs: 10,
        ..AuthSettings::default()
    });
    let now = now();
    let token = |nbf: u64, exp: u64| raw(json!({}), json!({"sub": "a", "nbf": nbf, "exp": exp}));
    assert!(
        auth.verify(&token(now + 5, now + 3600)).await.is_ok(),
        "within the leeway"
    );
    assert_eq!(
        auth.verify(&token(now + 20, now + 3600)).await,
        Err(AuthError::NotYetValid),
        "beyond the leeway"
    );
    assert!(
        auth.verify(&token(now - 60, now - 5)).await.is_ok(),
        "expired within it"
    );
    assert_eq!(
        auth.verify(&token(now - 60, now - 20)).await,
        Err(AuthError::Expired)
    );
    // The leeway is bounded: 3600 s asked, 60 s given.
    let lax = with(AuthSettings {
        leeway_secs: 3600,
        ..AuthSettings::default()
    });
    assert_eq!(lax.leeway_secs(), MAX_LEEWAY_SECS);
    assert_eq!(
        lax.verify(&token(now + 120, now + 3600)).await,
        Err(AuthError::NotYetValid)
    );
}

#[tokio::test]
async fn crit_headers_are_refused() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let payload = json!({"sub": "a", "exp": now() + 60});
    let crit = raw(
        json!({"crit": ["exp-policy"], "exp-policy": 1}),
        payload.clone(),
    );
    assert!(
        matches!(auth.verify(&crit).await, Err(AuthError::Invalid(m)) if m.contains("critical"))
    );
    assert!(auth.verify(&raw(json!({}), payload)).await.is_ok());
}

#[tokio::test]
async fn audience_and_issuer_must_match_when_set_and_aud_is_refused_when_not() {
    let exp = now() + 60;
    let plain = Authenticator::new(Some("s3cret"), true);
    let foreign_aud = raw(
        json!({}),
        json!({"sub": "a", "exp": exp, "aud": "someone-else"}),
    );
    assert!(
        plain.verify(&foreign_aud).await.is_err(),
        "an audience rollcall is not"
    );
    let strict = with(AuthSettings {
        issuer: Some("https://idp.example/".into()),
        audience: Some("rollcall".into()),
        ..AuthSettings::default()
    });
    let good =
        json!({"sub": "a", "exp": exp, "aud": ["x", "rollcall"], "iss": "https://idp.example/"});
    assert!(strict.verify(&raw(json!({}), good)).await.is_ok());
    for bad in [
        json!({"sub": "a", "exp": exp, "aud": "x", "iss": "https://idp.example/"}),
        json!({"sub": "a", "exp": exp, "aud": "rollcall", "iss": "https://evil.example/"}),
        json!({"sub": "a", "exp": exp, "iss": "https://idp.example/"}),
        json!({"sub": "a", "exp": exp, "aud": "rollcall"}),
    ] {
        assert!(
            strict.verify(&raw(json!({}), bad.clone())).await.is_err(),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_null_sessions_claim_is_refused_and_an_absent_one_means_any() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let exp = now() + 60;
    let null = raw(json!({}), json!({"sub": "a", "exp": exp, "sessions": null}));
    assert!(matches!(
        auth.verify(&null).await,
        Err(AuthError::Invalid(_))
    ));
    let absent = raw(json!({}), json!({"sub": "a", "exp": exp}));
    assert_eq!(auth.verify(&absent).await.map(|c| c.sessions), Ok(None));
    let none = raw(json!({}), json!({"sub": "a", "exp": exp, "sessions": []}));
    assert_eq!(
        auth.verify(&none).await.map(|c| c.sessions),
        Ok(Some(vec![]))
    );
}

#[tokio::test]
async fn hs384_and_other_algorithms_find_no_key() {
    let auth = Authenticator::new(Some("s3cret"), true);
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &json!({"sub": "a", "exp": now() + 60}),
        &EncodingKey::from_secret(b"s3cret"),
    )
    .expect("sign");
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::NoKey(_))
    ));
    // `alg: none` is not even a readable header.
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none"}"#),
        base64_url(format!(r#"{{"sub":"a","exp":{}}}"#, now() + 60).as_bytes())
    );
    assert!(matches!(
        auth.verify(&none).await,
        Err(AuthError::Invalid(_))
    ));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
