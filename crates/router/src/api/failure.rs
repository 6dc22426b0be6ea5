//! The one place where domain errors become HTTP statuses: every handle's typed error
//! maps to a status here, and its text (what, why, what to do) becomes the body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use weft_api::ErrorBody;
use weft_ipam::IpamError;

use crate::cni::CniHandleError;
use crate::containers::ContainersError;
use crate::datapath::expose::ExposeError;
use crate::dns::DnsHandleError;
use crate::ipam::IpamHandleError;
use crate::mesh::MeshError;
use crate::reset::ResetError;
use crate::services::ServicesError;

/// An API error: an HTTP status and one line for the user.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// What failed, why, what to do.
    pub message: String,
}

impl ApiFailure {
    /// An error with this status and the error's own text.
    pub fn new(status: StatusCode, e: impl std::fmt::Display) -> Self {
        ApiFailure {
            status,
            message: e.to_string(),
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 501: the capability is not built yet.
    pub fn not_available(what: &str) -> Self {
        ApiFailure {
            status: StatusCode::NOT_IMPLEMENTED,
            message: format!("{what} is not available yet in this version of weft"),
        }
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// The status of an IPAM error: whose fault it is (the request's, a conflict, a full
/// subnet, or the router's state).
fn ipam_status(e: &IpamHandleError) -> StatusCode {
    match e {
        IpamHandleError::Core(core) => match core {
            IpamError::BadConfig(_)
            | IpamError::OutsideRange { .. }
            | IpamError::NotUsable { .. }
            | IpamError::RmPeerSelf { .. }
            | IpamError::UnknownPeer { .. } => StatusCode::BAD_REQUEST,
            IpamError::AddressInUse { .. } | IpamError::PeerReachable { .. } => {
                StatusCode::CONFLICT
            }
            IpamError::SubnetFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        IpamHandleError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        IpamHandleError::BadCidr { .. } => StatusCode::BAD_REQUEST,
        IpamHandleError::Unexpected { .. } | IpamHandleError::RemoveState { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl From<IpamHandleError> for ApiFailure {
    fn from(e: IpamHandleError) -> Self {
        ApiFailure::new(ipam_status(&e), e)
    }
}

impl From<MeshError> for ApiFailure {
    fn from(e: MeshError) -> Self {
        ApiFailure::new(StatusCode::BAD_REQUEST, e)
    }
}

impl From<DnsHandleError> for ApiFailure {
    fn from(e: DnsHandleError) -> Self {
        let status = match e {
            DnsHandleError::Off => StatusCode::CONFLICT,
            DnsHandleError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            DnsHandleError::Record(weft_dns::DnsError::Full { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            DnsHandleError::Serve { .. } | DnsHandleError::Record(_) => StatusCode::BAD_REQUEST,
        };
        ApiFailure::new(status, e)
    }
}

/// The status of a services error: whose fault it is.
fn services_status(e: &ServicesError) -> StatusCode {
    use weft_services::ServiceError as Core;
    match e {
        ServicesError::Core(Core::Exists(_) | Core::PortInUse { .. } | Core::VipInUse { .. })
        | ServicesError::PortInUse { .. } => StatusCode::CONFLICT,
        ServicesError::Core(Core::Unknown(_)) => StatusCode::NOT_FOUND,
        ServicesError::Core(Core::TooMany { .. }) => StatusCode::INSUFFICIENT_STORAGE,
        ServicesError::Vip { source, .. } => ipam_status(source),
        ServicesError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<ServicesError> for ApiFailure {
    fn from(e: ServicesError) -> Self {
        ApiFailure::new(services_status(&e), e)
    }
}

impl From<ContainersError> for ApiFailure {
    fn from(e: ContainersError) -> Self {
        let status = match &e {
            ContainersError::Ipam(i) => ipam_status(i),
            ContainersError::Services(s) => services_status(s),
            ContainersError::Registry(_) | ContainersError::Task { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiFailure::new(status, e)
    }
}

impl From<ExposeError> for ApiFailure {
    fn from(e: ExposeError) -> Self {
        let status = match &e {
            ExposeError::Ipam(i) => ipam_status(i),
            _ => StatusCode::BAD_REQUEST,
        };
        ApiFailure::new(status, e)
    }
}

impl From<ResetError> for ApiFailure {
    fn from(e: ResetError) -> Self {
        ApiFailure::new(StatusCode::BAD_REQUEST, e)
    }
}

impl From<CniHandleError> for ApiFailure {
    fn from(e: CniHandleError) -> Self {
        let status = match &e {
            CniHandleError::Containers(_) => match e {
                CniHandleError::Containers(c) => return c.into(),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            CniHandleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CniHandleError::Exists { .. } | CniHandleError::IfnameTaken { .. } => {
                StatusCode::CONFLICT
            }
            CniHandleError::NotFound { .. } => StatusCode::NOT_FOUND,
            CniHandleError::Check(_) => StatusCode::PRECONDITION_FAILED,
            CniHandleError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            CniHandleError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiFailure::new(status, e)
    }
}
