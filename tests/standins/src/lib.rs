//! Local stand-ins for MFA services that cannot be reached from this network: they implement
//! the documented protocols exactly (request formats, signatures, answers), hold scripted user
//! behaviour (approve, deny, never answer, after a delay), and count what they were asked, so
//! tests can prove, e.g., that one login sent exactly one push.

pub mod duo;
pub mod entra;
