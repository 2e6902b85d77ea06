//! MS-CHAPv2 end to end through the server, proven with the worked example of RFC 2759 §9.2
//! and the MPPE key derivation of RFC 3079 §3.

use portcullis_tests::*;

const MICROSOFT: u32 = 311;
const MS_CHAP_ERROR: u8 = 2;
const MS_CHAP_CHALLENGE: u8 = 11;
const MS_MPPE_SEND_KEY: u8 = 16;
const MS_MPPE_RECV_KEY: u8 = 17;
const MS_CHAP2_RESPONSE: u8 = 25;
const MS_CHAP2_SUCCESS: u8 = 26;

// RFC 2759 §9.2.
const AUTH_CHALLENGE: &str = "5B5D7C7D7B3F2F3E3C2C602132262628";
const PEER_CHALLENGE: &str = "21402324255E262A28295F2B3A337C7E";
const NT_RESPONSE: &str = "82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF";
const AUTH_RESPONSE: &str = "S=407A5589115FD0D6209F510FE9C04566932CDA56";

fn request(id: u8, user: &str, nt_response: &[u8]) -> Vec<u8> {
    let auth = authenticator(u64::from(id) + 1000);
    let mut resp = vec![id, 0];
    resp.extend(hex::decode(PEER_CHALLENGE).unwrap());
    resp.extend([0u8; 8]);
    resp.extend_from_slice(nt_response);
    encode(
        ACCESS_REQUEST,
        id,
        auth,
        &vec![
            (attr::USER_NAME, user.as_bytes().to_vec()),
            (
                attr::VENDOR_SPECIFIC,
                vsa(
                    MICROSOFT,
                    MS_CHAP_CHALLENGE,
                    &hex::decode(AUTH_CHALLENGE).unwrap(),
                ),
            ),
            (
                attr::VENDOR_SPECIFIC,
                vsa(MICROSOFT, MS_CHAP2_RESPONSE, &resp),
            ),
        ],
        true,
        SECRET,
    )
}

#[test]
fn rfc2759_worked_example_through_the_server_with_rfc3079_keys() {
    let s = Server::start(ServerOpts {
        users: vec![User {
            name: "User",
            password: "clientPass",
            chap: false,
        }],
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    let nt = hex::decode(NT_RESPONSE).unwrap();
    let pkt = request(1, "User", &nt);
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
    let success = r
        .vsa(MICROSOFT, MS_CHAP2_SUCCESS)
        .expect("no MS-CHAP2-Success");
    assert_eq!(
        success[0], 1,
        "MS-CHAP2-Success ident must echo the response ident"
    );
    assert_eq!(std::str::from_utf8(&success[1..]).unwrap(), AUTH_RESPONSE);

    // MPPE keys: decrypt the salted attributes (RFC 2548) and compare with RFC 3079 §3.5.3.
    let req_auth: [u8; 16] = pkt[4..20].try_into().unwrap();
    let send = salt_decrypt(
        r.vsa(MICROSOFT, MS_MPPE_SEND_KEY)
            .expect("no MS-MPPE-Send-Key"),
        SECRET,
        &req_auth,
    );
    let recv = salt_decrypt(
        r.vsa(MICROSOFT, MS_MPPE_RECV_KEY)
            .expect("no MS-MPPE-Recv-Key"),
        SECRET,
        &req_auth,
    );
    let hash_hash: [u8; 16] = hex::decode("41C00C584BD2D91C4017A2A12FA59F3F")
        .unwrap()
        .try_into()
        .unwrap();
    let nt24: [u8; 24] = nt.clone().try_into().unwrap();
    let keys = portcullis_auth::mppe::MppeKeys::derive(&hash_hash, &nt24);
    assert_eq!(send, keys.send_key().to_vec());
    assert_eq!(recv, keys.recv_key().to_vec());
    // RFC 3079 §3.5.3 sample: the 128-bit start key for the authenticator's send direction.
    assert_eq!(hex::encode_upper(&send), "8B7CDC149B993A1BA118CB153F56DCCB");
    assert_ne!(send, recv);
}

#[test]
fn wrong_password_gets_ms_chap_error_691() {
    let s = Server::start(ServerOpts {
        users: vec![User {
            name: "User",
            password: "otherPass",
            chap: false,
        }],
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    let pkt = request(2, "User", &hex::decode(NT_RESPONSE).unwrap());
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_REJECT);
    let err = r.vsa(MICROSOFT, MS_CHAP_ERROR).expect("no MS-CHAP-Error");
    assert_eq!(err[0], 2);
    let text = std::str::from_utf8(&err[1..]).unwrap();
    assert!(text.starts_with("E=691 R=0 C="), "{text}");
    assert!(text.contains(" V=3"), "{text}");
    assert!(r.vsa(MICROSOFT, MS_MPPE_SEND_KEY).is_none());
}

#[test]
fn domain_prefixed_user_name_is_stripped_for_the_challenge_hash() {
    let s = Server::start(ServerOpts {
        users: vec![User {
            name: "User",
            password: "clientPass",
            chap: false,
        }],
        ..Default::default()
    });
    let c = RawClient::new(s.auth);
    let pkt = request(3, "EXAMPLE\\User", &hex::decode(NT_RESPONSE).unwrap());
    let r = check_reply(&c.exchange(&pkt).expect("no reply"), &pkt, SECRET);
    assert_eq!(r.code, ACCESS_ACCEPT, "{}", s.log());
}
