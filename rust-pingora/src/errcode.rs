//! The router's error vocabulary (docs/spec.md section 3, "Router-made responses").
//!
//! Every response the router makes itself carries one [`Code`]: its wire name
//! ([`Code::as_str`], the `X-Router-Error` value, the body's `error`, the access log's
//! `error` and the `code` label of `router_errors_total`), its HTTP status
//! ([`Code::status`]) and the body's human `message` ([`Code::message`]). The matches below
//! are exhaustive, so a new code cannot be added without its status and message. The wire
//! names are the contract and never change.

/// A router error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 503: no config has been loaded yet (§3 step 1).
    NoConfig,
    /// 400: `X-Routing-Key` absent or empty (§3 step 2).
    MissingRoutingKey,
    /// 404: the key is not in `routes` (§3 step 2).
    UnknownRoutingKey,
    /// 503: no placement of the chain is available (§3 step 3).
    NoHealthyUpstream,
    /// 503: the chosen placement is at `max_concurrency` (§3 step 4).
    ConcurrencyLimit,
    /// 502: connect failure and nothing left to try (§3 step 6).
    UpstreamConnectFailed,
    /// 504: no response headers within `request_ms` (§3 step 7).
    UpstreamTimeout,
    /// 502: the upstream closed, reset or did not speak HTTP/1.x before the headers (§3 step 7).
    UpstreamProtocolError,
    /// 431: request header section above 64 KiB.
    RequestHeadersTooLarge,
    /// 400: a malformed request the router answers itself (e.g. `Content-Length` with
    /// `Transfer-Encoding`).
    BadRequest,
}

impl Code {
    /// Every code, in the order of the spec's table.
    pub const ALL: [Code; 10] = [
        Code::NoConfig,
        Code::MissingRoutingKey,
        Code::UnknownRoutingKey,
        Code::NoHealthyUpstream,
        Code::ConcurrencyLimit,
        Code::UpstreamConnectFailed,
        Code::UpstreamTimeout,
        Code::UpstreamProtocolError,
        Code::RequestHeadersTooLarge,
        Code::BadRequest,
    ];

    /// The wire name, e.g. `"no_config"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::NoConfig => "no_config",
            Code::MissingRoutingKey => "missing_routing_key",
            Code::UnknownRoutingKey => "unknown_routing_key",
            Code::NoHealthyUpstream => "no_healthy_upstream",
            Code::ConcurrencyLimit => "concurrency_limit",
            Code::UpstreamConnectFailed => "upstream_connect_failed",
            Code::UpstreamTimeout => "upstream_timeout",
            Code::UpstreamProtocolError => "upstream_protocol_error",
            Code::RequestHeadersTooLarge => "request_headers_too_large",
            Code::BadRequest => "bad_request",
        }
    }

    /// The HTTP status of the router-made response.
    pub const fn status(self) -> u16 {
        match self {
            Code::NoConfig | Code::NoHealthyUpstream | Code::ConcurrencyLimit => 503,
            Code::MissingRoutingKey | Code::BadRequest => 400,
            Code::UnknownRoutingKey => 404,
            Code::UpstreamConnectFailed | Code::UpstreamProtocolError => 502,
            Code::UpstreamTimeout => 504,
            Code::RequestHeadersTooLarge => 431,
        }
    }

    /// The human text of the body's `message` member.
    pub const fn message(self) -> &'static str {
        match self {
            Code::NoConfig => "no config loaded",
            Code::MissingRoutingKey => "X-Routing-Key header is missing or empty",
            Code::UnknownRoutingKey => "no route for this routing key",
            Code::NoHealthyUpstream => "no available placement in the chain",
            Code::ConcurrencyLimit => "placement is at its concurrency limit",
            Code::UpstreamConnectFailed => "could not connect to the upstream",
            Code::UpstreamTimeout => "upstream sent no response headers in time",
            Code::UpstreamProtocolError => "upstream response was not valid HTTP",
            Code::RequestHeadersTooLarge => "request headers too large",
            Code::BadRequest => "bad request",
        }
    }

    /// Whether the response names the placement that had been chosen
    /// (`X-Router-Placement`): only the codes decided after selection (spec §3).
    pub const fn names_placement(self) -> bool {
        matches!(
            self,
            Code::ConcurrencyLimit
                | Code::UpstreamConnectFailed
                | Code::UpstreamTimeout
                | Code::UpstreamProtocolError
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of docs/spec.md section 3, row by row.
    #[test]
    fn matches_the_spec_table() {
        let table: Vec<(u16, &str)> = Code::ALL.iter().map(|c| (c.status(), c.as_str())).collect();
        assert_eq!(
            table,
            vec![
                (503, "no_config"),
                (400, "missing_routing_key"),
                (404, "unknown_routing_key"),
                (503, "no_healthy_upstream"),
                (503, "concurrency_limit"),
                (502, "upstream_connect_failed"),
                (504, "upstream_timeout"),
                (502, "upstream_protocol_error"),
                (431, "request_headers_too_large"),
                (400, "bad_request"),
            ]
        );
        let mut names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len(), "wire names are distinct");
        assert!(Code::ALL.iter().all(|c| !c.message().is_empty()));
    }
}
