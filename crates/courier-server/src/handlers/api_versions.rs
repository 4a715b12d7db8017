//! ApiVersions: which APIs and versions this broker serves, and its features (v3+): the
//! `transaction.version` feature tells clients which transaction protocol to use (2 =
//! KIP-890 part 2).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use crate::listener::Context;

const TRANSACTION_VERSION: &str = "transaction.version";

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

/// Answers with every served API and its version range, and the features.
pub fn handle(ctx: &Context, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let level = ctx.broker.txns.transaction_version();
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_keys())
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version(0)
            .with_max_version(2)])
        .with_finalized_features_epoch(1)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(TRANSACTION_VERSION))
            .with_min_version_level(level)
            .with_max_version_level(level)])
}

/// The v0 answer to an ApiVersions request at a version this broker does not know.
pub fn unsupported_version_response() -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}
