//! ApiVersions: which APIs and versions this broker serves.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

fn api_keys() -> Vec<ApiVersion> {
    courier_protocol::supported_apis()
        .into_iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}

/// Answers with every served API and its version range.
pub fn handle(_req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// The v0 answer to an ApiVersions request at a version this broker does not know.
pub fn unsupported_version_response() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}
