//! Fuzz the strict decoder, the attribute rules, verification and the owned round trip.
//! Nothing here may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_proto::{
    crypto, dict, verify_request, Decode, Encode, Packet, RawPacket, SharedSecret, VerifyPolicy,
};

fuzz_target!(|data: &[u8]| {
    let Ok(secret) = SharedSecret::new(b"fuzz-secret") else {
        return;
    };
    let Ok(raw) = RawPacket::decode(data) else {
        // The owned decoder must agree with the raw one.
        assert!(Packet::decode(data).is_err());
        return;
    };
    assert_eq!(raw.len(), raw.bytes().len());
    let _ = raw.check_attribute_rules();
    for policy in [
        VerifyPolicy::default(),
        VerifyPolicy::default().with_message_authenticator_required(false),
    ] {
        if let Ok(v) = verify_request(raw, &secret, &policy) {
            let _ = v.has_message_authenticator();
        }
    }
    for a in raw.attributes() {
        let _ = dict::display_attr(a.attr_type, a.value).to_string();
        let _ = crypto::unhide_user_password(a.value, &secret, raw.authenticator());
        let _ = crypto::salt_decrypt(a.value, &secret, raw.authenticator());
        let _ = crypto::decrypt_tunnel_password(a.value, &secret, raw.authenticator());
    }
    for v in raw.vsas() {
        let _ = dict::display_vendor_value(v.vendor, v.vendor_type, v.value).to_string();
    }
    let _ = format!("{raw:?}");

    // Owned round trip: decode -> encode -> decode gives the same packet and bytes.
    let owned = Packet::from_raw(&raw);
    let bytes = owned.to_bytes().expect("a decoded packet re-encodes");
    assert_eq!(bytes, raw.bytes());
    let again = Packet::decode(&bytes).expect("re-encoded packet decodes");
    assert_eq!(again, owned);
    assert_eq!(Packet::decode(data).expect("same as raw"), owned);
});
