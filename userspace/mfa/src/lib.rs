//! Second-factor providers for Portcullis, behind one async trait ([`MfaProvider`]).
//!
//! A provider is asked to [`begin`](MfaProvider::begin) a second factor for a user who already
//! passed primary authentication and policy. It answers with a challenge to relay to the user
//! (an OTP prompt, carried in a RADIUS Access-Challenge), a push that was sent (then
//! [`poll_push`](MfaProvider::poll_push) learns its answer), an immediate verdict, or "not enrolled".
//!
//! What this crate does not do: RADIUS (the server maps these outcomes to Access-Challenge,
//! Access-Accept and Access-Reject), the pending-login tables, NPS-style settings
//! (require_user_match, allow-lists): those are the server's. Fail modes (`secure` / `safe`)
//! are applied by the server to the [`MfaError`]s providers return.

mod provider;

#[cfg(any(test, feature = "battery"))]
pub mod battery;
pub mod duo;
pub mod entra;
mod http;
pub mod privacyidea;
pub mod resilience;
pub mod totp;

pub use duo::{Duo, DuoConfig};
pub use entra::{Entra, EntraConfig, EntraCredential};
pub use privacyidea::{PrivacyIdea, PrivacyIdeaConfig};
pub use provider::{
    Begin, DenyReason, Factor, MfaError, MfaProvider, MfaRequest, ProviderState, PushStatus,
    Verdict,
};
pub use resilience::{ResilienceConfig, Resilient};
pub use totp::{TotpProvider, TotpStore};
