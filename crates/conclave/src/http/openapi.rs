//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! annotations so that it cannot drift from the code (and can drive a fuzzer).
//!
//! The annotations say what each handler answers and which credentials it
//! takes (`security`); [`SharedAnswers`] adds what the shared layers answer
//! for every operation of a kind, from the same rules the code follows:
//! 400 for any operation with a body ([`super::error::ApiJson`]), 401 for any
//! that takes credentials ([`super::session::Authed`]), and 403 for any that
//! changes state, which a foreign `Origin` gets ([`super::web::Origins`]).

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::session::SESSION_COOKIE;
use super::{account, admin, calendar, error, meetings, native_login, oidc};

/// The name of the session-cookie scheme in the document.
pub const SESSION: &str = "session_cookie";
/// The name of the API-token scheme in the document.
pub const TOKEN: &str = "api_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conclave API",
        description = "Accounts, API tokens and meetings. The meeting WebSocket at /api/v1/meetings/{id}/ws is described in docs/protocol.md."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        account::sign_in,
        account::redeem_link,
        oidc::providers,
        oidc::methods,
        native_login::token,
        account::sign_out,
        account::sign_up,
        account::me,
        account::change_password,
        account::list_tokens,
        account::create_token,
        account::delete_token,
        admin::list,
        admin::disable,
        admin::enable,
        admin::remove,
        meetings::create,
        meetings::list,
        meetings::get,
        meetings::update,
        meetings::remove,
        calendar::ics,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&SharedAnswers)
)]
pub struct ApiDoc;

/// The security schemes, and the answers every operation of a kind can get
/// from the layers in front of its handler.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The browser session that POST /api/v1/auth/signin (or /auth/link) sets: \
                 HttpOnly, SameSite=Strict, 14 days.",
            ))),
        );
        components.add_security_scheme(
            TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cnv_ followed by 64 hex digits")
                    .description(Some(
                        "A personal API token from POST /api/v1/tokens. A token that is \
                         sent but unknown or revoked gets 401, whatever the operation.",
                    ))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.head, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (op, changes_state) in ops {
                if let Some(op) = op.as_mut() {
                    shared_answers(op, changes_state);
                }
            }
        }
    }
}

fn shared_answers(op: &mut Operation, changes_state: bool) {
    if op.request_body.is_some() {
        add_error(
            op,
            "400",
            "The body is not a JSON object of the documented shape \
             (malformed JSON, an array, an unknown field, a wrong type, over 64 KiB, or not \
             sent as application/json), or a value is out of range.",
        );
    }
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        add_error(
            op,
            "401",
            "No session cookie or API token, or one that is unknown, \
             expired or revoked.",
        );
    }
    if changes_state {
        add_error(
            op,
            "403",
            "The request's Origin is not this server's (cross-site \
             request), or the operation is not allowed.",
        );
    }
}

/// Adds an error answer with the [`error::ErrorBody`] shape unless the
/// operation documents that status itself.
fn add_error(op: &mut Operation, status: &str, why: &str) {
    let body = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(why)
                .content("application/json", body)
                .build()
                .into()
        });
}

/// `GET /api/v1/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
