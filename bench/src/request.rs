//! Building the requests of each scenario with portcullis-proto, and checking every reply.

use anyhow::Result;
use md5::{Digest, Md5};
use portcullis_auth::mschapv2::{self, MsChap2Response};
use portcullis_auth::nt::nt_hash;
use portcullis_proto::crypto::{
    reply_ma_authenticator_field, verify_message_authenticator, verify_response_authenticator,
};
use portcullis_proto::{ms, AttrType, Code, PacketBuilder, RawPacket, SharedSecret, MICROSOFT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::Scenario;

/// One request in this many carries a wrong password and must be rejected.
const WRONG_PASSWORD_EVERY: u64 = 100;

/// The bench users: `user0000`, `user0001`, ... with deterministic passwords, so that a server
/// started elsewhere (`--server`) can be given the same users.
pub struct Users {
    names: Vec<String>,
    nt_hashes: Vec<[u8; 16]>,
}

impl Users {
    pub fn new(count: u32) -> Self {
        let names: Vec<String> = (0..count).map(user_name).collect();
        let nt_hashes = (0..count).map(|i| nt_hash(&password(i))).collect();
        Self { names, nt_hashes }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The NT hash of user `i`'s password.
    pub fn nt_hash(&self, i: usize) -> &[u8; 16] {
        &self.nt_hashes[i]
    }
}

/// The name of bench user `i`.
pub fn user_name(i: u32) -> String {
    format!("user{i:04}")
}

/// The password of bench user `i`.
pub fn password(i: u32) -> String {
    format!("Bench#{i:04}pw")
}

fn wrong_password(i: u32) -> String {
    format!("Wrong#{i:04}pw")
}

/// What the reply to a request must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Accept,
    Reject,
    AccountingResponse,
    /// Status-Server to a port of unknown kind: Access-Accept (authentication port) or
    /// Accounting-Response (accounting port), RFC 5997 §3.
    StatusAny,
}

/// The MS-CHAPv2 exchange of a request, to check MS-CHAP2-Success / MS-CHAP-Error.
#[derive(Debug, Clone, Copy)]
pub struct MsChap {
    user: u32,
    ident: u8,
    authenticator_challenge: [u8; 16],
    peer_challenge: [u8; 16],
    nt_response: [u8; 24],
}

/// What is remembered about a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    code: Code,
    authenticator: [u8; 16],
    pub expect: Expect,
    mschap: Option<MsChap>,
    /// The reply must carry Message-Authenticator as its first attribute, in every reply
    /// (Portcullis's Blast-RADIUS hardening); other servers are held to a valid one anywhere,
    /// and to none in an Accounting-Response.
    ma_first: bool,
}

/// Builds the requests of one scenario.
pub struct Generator<'a> {
    scenario: Scenario,
    secret: &'a SharedSecret,
    users: &'a Users,
    status_expect: Expect,
    rng: StdRng,
    /// Requests built so far (picks the user, the wrong passwords, the accounting sessions).
    counter: u64,
    /// Distinguishes this run's accounting sessions from other runs'.
    run_tag: u32,
    ma_first: bool,
}

impl<'a> Generator<'a> {
    /// `status_expect`: [`Expect::Accept`] when Status-Server goes to a known authentication
    /// port, [`Expect::StatusAny`] when the port's kind is unknown.
    pub fn new(
        scenario: Scenario,
        secret: &'a SharedSecret,
        users: &'a Users,
        status_expect: Expect,
    ) -> Self {
        let mut rng = StdRng::from_entropy();
        let run_tag = rng.gen();
        Self {
            scenario,
            secret,
            users,
            status_expect,
            rng,
            counter: 0,
            run_tag,
            ma_first: true,
        }
    }

    /// Accept replies whose (valid) Message-Authenticator is not the first attribute: for
    /// servers other than Portcullis (FreeRADIUS appends it).
    pub fn ma_anywhere(mut self) -> Self {
        self.ma_first = false;
        self
    }

    /// Builds the next request with `identifier` into `buf` (replacing its content).
    pub fn build(&mut self, identifier: u8, buf: &mut Vec<u8>) -> Result<Sent> {
        let n = self.counter;
        self.counter += 1;
        let user = (n % self.users.len() as u64) as u32;
        let wrong = n % WRONG_PASSWORD_EVERY == WRONG_PASSWORD_EVERY - 1;
        let name = self.users.name(user as usize);
        let pw = if wrong {
            wrong_password(user)
        } else {
            password(user)
        };
        let access_expect = if wrong {
            Expect::Reject
        } else {
            Expect::Accept
        };
        let authenticator: [u8; 16] = self.rng.gen();
        let secret = self.secret;
        let mut mschap = None;

        let (code, expect) = match self.scenario {
            Scenario::Status => {
                let mut b = PacketBuilder::with_buffer(
                    std::mem::take(buf),
                    Code::STATUS_SERVER,
                    identifier,
                );
                b.finish_status_server(secret, authenticator)?;
                *buf = b.into_buffer();
                (Code::STATUS_SERVER, self.status_expect)
            }
            Scenario::Accounting => {
                let mut b = PacketBuilder::with_buffer(
                    std::mem::take(buf),
                    Code::ACCOUNTING_REQUEST,
                    identifier,
                );
                // Start, Interim-Update, Stop of one session, then the next session.
                let status = [1u32, 3, 2][(n % 3) as usize];
                let session = format!("{:08x}-{:010}", self.run_tag, n / 3);
                b.push(AttrType::USER_NAME, name.as_bytes())?;
                b.push_ipv4(AttrType::NAS_IP_ADDRESS, std::net::Ipv4Addr::LOCALHOST)?;
                b.push_u32(AttrType::NAS_PORT, user)?;
                b.push_u32(AttrType::ACCT_STATUS_TYPE, status)?;
                b.push(AttrType::ACCT_SESSION_ID, session.as_bytes())?;
                b.push_u32(AttrType::ACCT_DELAY_TIME, 0)?;
                if status != 1 {
                    let t = 60 * (n % 3) as u32;
                    b.push_u32(AttrType::ACCT_SESSION_TIME, t)?;
                    b.push_u32(AttrType::ACCT_INPUT_OCTETS, t * 1000)?;
                    b.push_u32(AttrType::ACCT_OUTPUT_OCTETS, t * 4000)?;
                }
                if status == 2 {
                    b.push_u32(AttrType::ACCT_TERMINATE_CAUSE, 1)?; // User-Request
                }
                b.finish_accounting_request(secret);
                *buf = b.into_buffer();
                (Code::ACCOUNTING_REQUEST, Expect::AccountingResponse)
            }
            Scenario::Pap
            | Scenario::Flood
            | Scenario::Mfa
            | Scenario::Chap
            | Scenario::Mschapv2 => {
                let mut b = PacketBuilder::with_buffer(
                    std::mem::take(buf),
                    Code::ACCESS_REQUEST,
                    identifier,
                );
                b.add_message_authenticator()?;
                b.push(AttrType::USER_NAME, name.as_bytes())?;
                b.push_ipv4(AttrType::NAS_IP_ADDRESS, std::net::Ipv4Addr::LOCALHOST)?;
                b.push_u32(AttrType::NAS_PORT, user)?;
                match self.scenario {
                    Scenario::Pap | Scenario::Flood | Scenario::Mfa => {
                        b.push_user_password(pw.as_bytes(), secret, &authenticator)?
                    }
                    Scenario::Chap => {
                        // RFC 1994 / RFC 2865 §2.2: MD5(ident || password || challenge), the
                        // Request Authenticator being the challenge.
                        let ident: u8 = self.rng.gen();
                        let mut value = [0u8; 17];
                        value[0] = ident;
                        let digest = Md5::new()
                            .chain_update([ident])
                            .chain_update(pw.as_bytes())
                            .chain_update(authenticator)
                            .finalize();
                        value[1..].copy_from_slice(&digest);
                        b.push(AttrType::CHAP_PASSWORD, &value)?;
                    }
                    _ => {
                        let ident: u8 = self.rng.gen();
                        let authenticator_challenge: [u8; 16] = self.rng.gen();
                        let peer_challenge: [u8; 16] = self.rng.gen();
                        let hash = if wrong {
                            nt_hash(&pw)
                        } else {
                            self.users.nt_hashes[user as usize]
                        };
                        let nt_response = mschapv2::generate_nt_response(
                            &authenticator_challenge,
                            &peer_challenge,
                            name.as_bytes(),
                            &hash,
                        );
                        let response = MsChap2Response {
                            ident,
                            flags: 0,
                            peer_challenge,
                            nt_response,
                        };
                        b.push_vsa(MICROSOFT, ms::CHAP_CHALLENGE, &authenticator_challenge)?;
                        b.push_vsa(MICROSOFT, ms::CHAP2_RESPONSE, &response.encode())?;
                        mschap = Some(MsChap {
                            user,
                            ident,
                            authenticator_challenge,
                            peer_challenge,
                            nt_response,
                        });
                    }
                }
                b.finish_access_request(secret, authenticator);
                *buf = b.into_buffer();
                (Code::ACCESS_REQUEST, access_expect)
            }
        };
        // Accounting-Request computes its Request Authenticator: read back what was sent.
        let mut sent_auth = [0u8; 16];
        sent_auth.copy_from_slice(&buf[4..20]);
        Ok(Sent {
            code,
            authenticator: sent_auth,
            expect,
            mschap,
            ma_first: self.ma_first,
        })
    }
}

/// Checks a reply to `sent`. `Err` names what was wrong.
pub fn check_reply(
    reply: &[u8],
    sent: &Sent,
    secret: &SharedSecret,
    users: &Users,
) -> Result<Code, &'static str> {
    let p = RawPacket::decode(reply).map_err(|_| "reply does not decode")?;
    if !verify_response_authenticator(&p, &sent.authenticator, secret) {
        return Err("bad Response Authenticator");
    }
    let code = p.code();
    let code_ok = match sent.expect {
        Expect::Accept => code == Code::ACCESS_ACCEPT,
        Expect::Reject => code == Code::ACCESS_REJECT,
        Expect::AccountingResponse => code == Code::ACCOUNTING_RESPONSE,
        Expect::StatusAny => code == Code::ACCESS_ACCEPT || code == Code::ACCOUNTING_RESPONSE,
    };
    if !code_ok {
        return Err(match (sent.expect, code) {
            (Expect::Accept, Code::ACCESS_REJECT) => "Access-Reject for a good password",
            (Expect::Reject, Code::ACCESS_ACCEPT) => "Access-Accept for a wrong password",
            _ => "unexpected reply code",
        });
    }
    let field = reply_ma_authenticator_field(code, sent.code, &sent.authenticator);
    match verify_message_authenticator(&p, &field, secret) {
        // Other servers: RFC 2869 does not ask for it in an Accounting-Response.
        None if !sent.ma_first && code == Code::ACCOUNTING_RESPONSE => {}
        None => return Err("no Message-Authenticator"),
        Some(false) => return Err("bad Message-Authenticator"),
        Some(true) => {}
    }
    if sent.ma_first
        && p.attributes().next().map(|a| a.attr_type) != Some(AttrType::MESSAGE_AUTHENTICATOR)
    {
        return Err("Message-Authenticator is not the first attribute");
    }
    if let Some(m) = &sent.mschap {
        check_mschap(&p, code, m, users)?;
    }
    Ok(code)
}

fn check_mschap(
    p: &RawPacket<'_>,
    code: Code,
    m: &MsChap,
    users: &Users,
) -> Result<(), &'static str> {
    if code == Code::ACCESS_REJECT {
        let err = p
            .get_vsa(MICROSOFT, ms::CHAP_ERROR)
            .ok_or("MS-CHAPv2 reject without MS-CHAP-Error")?;
        if err.first() != Some(&m.ident) {
            return Err("MS-CHAP-Error with the wrong ident");
        }
        return Ok(());
    }
    let success = p
        .get_vsa(MICROSOFT, ms::CHAP2_SUCCESS)
        .ok_or("MS-CHAPv2 accept without MS-CHAP2-Success")?;
    let (ident, response) = success.split_first().ok_or("empty MS-CHAP2-Success")?;
    if *ident != m.ident {
        return Err("MS-CHAP2-Success with the wrong ident");
    }
    let user = m.user as usize;
    if !mschapv2::check_authenticator_response(
        &users.nt_hashes[user],
        &m.nt_response,
        &m.peer_challenge,
        &m.authenticator_challenge,
        users.name(user).as_bytes(),
        response,
    ) {
        return Err("MS-CHAP2-Success with a wrong authenticator response");
    }
    if p.get_vsa(MICROSOFT, ms::MPPE_SEND_KEY).is_none()
        || p.get_vsa(MICROSOFT, ms::MPPE_RECV_KEY).is_none()
    {
        return Err("MS-CHAPv2 accept without MS-MPPE keys");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use portcullis_auth::reversible::ReversibleKey;
    use portcullis_auth::store::LocalUsers;
    use portcullis_proto::crypto::unhide_user_password;
    use portcullis_proto::{verify_request, VerifyPolicy};

    fn secret() -> SharedSecret {
        SharedSecret::new(b"bench-test-secret").unwrap()
    }

    /// A minimal server: verifies the request and answers it the way Portcullis does.
    fn answer(request: &[u8], users: &LocalUsers, secret: &SharedSecret) -> Vec<u8> {
        let raw = RawPacket::decode(request).unwrap();
        raw.check_attribute_rules().unwrap();
        let req = verify_request(raw, secret, &VerifyPolicy::default()).unwrap();
        let p = req.packet();
        let code = p.code();
        let user = p
            .get(AttrType::USER_NAME)
            .map(|n| users.get(std::str::from_utf8(n).unwrap()).unwrap());
        let mut b = match code {
            Code::ACCOUNTING_REQUEST => PacketBuilder::reply(Code::ACCOUNTING_RESPONSE, &req),
            Code::STATUS_SERVER => PacketBuilder::reply(Code::ACCESS_ACCEPT, &req),
            _ => {
                let user = user.unwrap();
                let mut success = None;
                let granted = if let Some(pw) = p.get(AttrType::USER_PASSWORD) {
                    let pw = unhide_user_password(pw, secret, p.authenticator()).unwrap();
                    user.verify_pap(&pw)
                } else if let Some(chap) = p.get(AttrType::CHAP_PASSWORD) {
                    let response: &[u8; 16] = chap[1..].try_into().unwrap();
                    user.verify_chap(chap[0], response, p.authenticator())
                        == portcullis_auth::store::ChapOutcome::Accept
                } else {
                    let challenge: &[u8; 16] = p
                        .get_vsa(MICROSOFT, ms::CHAP_CHALLENGE)
                        .unwrap()
                        .try_into()
                        .unwrap();
                    let resp =
                        MsChap2Response::parse(p.get_vsa(MICROSOFT, ms::CHAP2_RESPONSE).unwrap())
                            .unwrap();
                    success = Some((
                        resp.ident,
                        user.verify_mschapv2(
                            p.get(AttrType::USER_NAME).unwrap(),
                            challenge,
                            &resp.peer_challenge,
                            &resp.nt_response,
                        ),
                    ));
                    success.as_ref().unwrap().1.is_some()
                };
                let mut b = PacketBuilder::reply(
                    if granted {
                        Code::ACCESS_ACCEPT
                    } else {
                        Code::ACCESS_REJECT
                    },
                    &req,
                );
                match success {
                    Some((ident, Some(ok))) => {
                        b.push_vsa(MICROSOFT, ms::CHAP2_SUCCESS, &ok.success_attribute(ident))
                            .unwrap();
                        b.push_vsa(MICROSOFT, ms::MPPE_SEND_KEY, &[0; 34]).unwrap();
                        b.push_vsa(MICROSOFT, ms::MPPE_RECV_KEY, &[0; 34]).unwrap();
                    }
                    Some((ident, None)) => {
                        b.push_vsa(MICROSOFT, ms::CHAP_ERROR, &[ident, b'E'])
                            .unwrap();
                    }
                    None => {}
                }
                b
            }
        };
        b.finish_reply(secret, req.authenticator()).to_vec()
    }

    #[test]
    fn every_scenario_round_trips_through_a_server() {
        let key = ReversibleKey::generate(&mut rand::rngs::OsRng);
        let local = LocalUsers::parse(
            &crate::server::users_file_text(3, &key).unwrap(),
            "users.toml",
            Some(&key),
        )
        .unwrap();
        let users = Users::new(3);
        let secret = secret();
        for scenario in [
            Scenario::Pap,
            Scenario::Chap,
            Scenario::Mschapv2,
            Scenario::Accounting,
            Scenario::Status,
        ] {
            let mut g = Generator::new(scenario, &secret, &users, Expect::Accept);
            let mut buf = Vec::new();
            let (mut accepts, mut rejects) = (0, 0);
            for n in 0..200u32 {
                let sent = g.build(n as u8, &mut buf).unwrap();
                let reply = answer(&buf, &local, &secret);
                match check_reply(&reply, &sent, &secret, &users) {
                    Ok(Code::ACCESS_REJECT) => rejects += 1,
                    Ok(Code::ACCESS_ACCEPT) => accepts += 1,
                    Ok(_) => {}
                    Err(e) => panic!("{scenario:?} request {n}: {e}"),
                }
            }
            if matches!(
                scenario,
                Scenario::Pap | Scenario::Chap | Scenario::Mschapv2
            ) {
                assert_eq!((accepts, rejects), (198, 2), "{scenario:?}");
            }
        }
    }

    #[test]
    fn wrong_replies_are_caught() {
        let users = Users::new(1);
        let secret = secret();
        let mut g = Generator::new(Scenario::Status, &secret, &users, Expect::Accept);
        let mut buf = Vec::new();
        let sent = g.build(9, &mut buf).unwrap();
        let req = verify_request(
            RawPacket::decode(&buf).unwrap(),
            &secret,
            &VerifyPolicy::default(),
        )
        .unwrap();
        let good = PacketBuilder::reply(Code::ACCESS_ACCEPT, &req)
            .finish_reply(&secret, req.authenticator())
            .to_vec();
        assert_eq!(
            check_reply(&good, &sent, &secret, &users),
            Ok(Code::ACCESS_ACCEPT)
        );

        let other = SharedSecret::new(b"another secret").unwrap();
        let bad_secret = PacketBuilder::reply(Code::ACCESS_ACCEPT, &req)
            .finish_reply(&other, req.authenticator())
            .to_vec();
        assert!(check_reply(&bad_secret, &sent, &secret, &users).is_err());

        let reject = PacketBuilder::reply(Code::ACCESS_REJECT, &req)
            .finish_reply(&secret, req.authenticator())
            .to_vec();
        assert!(check_reply(&reject, &sent, &secret, &users).is_err());

        let no_ma = PacketBuilder::new(Code::ACCESS_ACCEPT, 9)
            .finish_reply(&secret, req.authenticator())
            .to_vec();
        assert_eq!(
            check_reply(&no_ma, &sent, &secret, &users),
            Err("no Message-Authenticator")
        );

        let mut ma_second = PacketBuilder::new(Code::ACCESS_ACCEPT, 9);
        ma_second.push(AttrType::REPLY_MESSAGE, b"hi").unwrap();
        ma_second.add_message_authenticator().unwrap();
        let ma_second = ma_second
            .finish_reply(&secret, req.authenticator())
            .to_vec();
        assert_eq!(
            check_reply(&ma_second, &sent, &secret, &users),
            Err("Message-Authenticator is not the first attribute")
        );

        let mut tampered = good.clone();
        tampered[25] ^= 1;
        assert!(check_reply(&tampered, &sent, &secret, &users).is_err());
        assert!(check_reply(&good[..10], &sent, &secret, &users).is_err());
    }
}
