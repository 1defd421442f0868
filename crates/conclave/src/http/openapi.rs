//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! annotations so that it cannot drift from the code (and can drive a fuzzer).

use axum::Json;
use utoipa::OpenApi;

use super::{account, error, meetings};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conclave API",
        description = "Accounts, API tokens and meetings. The meeting WebSocket at /api/v1/meetings/{id}/ws is described in docs/protocol.md."
    ),
    paths(
        super::healthz,
        account::sign_in,
        account::redeem_link,
        account::sign_out,
        account::sign_up,
        account::me,
        account::change_password,
        account::list_tokens,
        account::create_token,
        account::delete_token,
        meetings::create,
        meetings::list,
        meetings::get,
        meetings::update,
        meetings::remove,
    ),
    components(schemas(error::ErrorBody))
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
