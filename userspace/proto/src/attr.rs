//! Code points: packet codes, attribute types, vendor ids and the RFC 2548 Microsoft
//! vendor attribute numbers.
//!
//! All of them are *open* newtypes: any value on the wire is representable, and the
//! named constants are just well-known points in the space. Unknown codes and attribute
//! types therefore survive a decode/encode round trip unchanged.

use core::fmt;

/// RADIUS packet code (RFC 2865 §3, RFC 2866, RFC 5176, RFC 5997).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(pub u8);

impl Code {
    pub const ACCESS_REQUEST: Code = Code(1);
    pub const ACCESS_ACCEPT: Code = Code(2);
    pub const ACCESS_REJECT: Code = Code(3);
    pub const ACCOUNTING_REQUEST: Code = Code(4);
    pub const ACCOUNTING_RESPONSE: Code = Code(5);
    pub const ACCESS_CHALLENGE: Code = Code(11);
    pub const STATUS_SERVER: Code = Code(12);
    pub const STATUS_CLIENT: Code = Code(13);
    pub const DISCONNECT_REQUEST: Code = Code(40);
    pub const DISCONNECT_ACK: Code = Code(41);
    pub const DISCONNECT_NAK: Code = Code(42);
    pub const COA_REQUEST: Code = Code(43);
    pub const COA_ACK: Code = Code(44);
    pub const COA_NAK: Code = Code(45);

    /// The IANA name of a known code, `None` for anything else.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "Access-Request",
            2 => "Access-Accept",
            3 => "Access-Reject",
            4 => "Accounting-Request",
            5 => "Accounting-Response",
            11 => "Access-Challenge",
            12 => "Status-Server",
            13 => "Status-Client",
            40 => "Disconnect-Request",
            41 => "Disconnect-ACK",
            42 => "Disconnect-NAK",
            43 => "CoA-Request",
            44 => "CoA-ACK",
            45 => "CoA-NAK",
            _ => return None,
        })
    }

    /// True for the codes whose Authenticator field is a Response Authenticator computed
    /// over the Request Authenticator of the request they answer.
    pub const fn is_response(self) -> bool {
        matches!(self.0, 2 | 3 | 5 | 11 | 41 | 42 | 44 | 45)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Code-{}", self.0),
        }
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({} {})", self.0, self)
    }
}

/// RADIUS attribute type (one octet, RFC 2865 §5).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrType(pub u8);

impl AttrType {
    // RFC 2865
    pub const USER_NAME: AttrType = AttrType(1);
    pub const USER_PASSWORD: AttrType = AttrType(2);
    pub const CHAP_PASSWORD: AttrType = AttrType(3);
    pub const NAS_IP_ADDRESS: AttrType = AttrType(4);
    pub const NAS_PORT: AttrType = AttrType(5);
    pub const SERVICE_TYPE: AttrType = AttrType(6);
    pub const FRAMED_PROTOCOL: AttrType = AttrType(7);
    pub const FRAMED_IP_ADDRESS: AttrType = AttrType(8);
    pub const FRAMED_IP_NETMASK: AttrType = AttrType(9);
    pub const FRAMED_ROUTING: AttrType = AttrType(10);
    pub const FILTER_ID: AttrType = AttrType(11);
    pub const FRAMED_MTU: AttrType = AttrType(12);
    pub const FRAMED_COMPRESSION: AttrType = AttrType(13);
    pub const LOGIN_IP_HOST: AttrType = AttrType(14);
    pub const LOGIN_SERVICE: AttrType = AttrType(15);
    pub const LOGIN_TCP_PORT: AttrType = AttrType(16);
    pub const REPLY_MESSAGE: AttrType = AttrType(18);
    pub const CALLBACK_NUMBER: AttrType = AttrType(19);
    pub const CALLBACK_ID: AttrType = AttrType(20);
    pub const FRAMED_ROUTE: AttrType = AttrType(22);
    pub const FRAMED_IPX_NETWORK: AttrType = AttrType(23);
    pub const STATE: AttrType = AttrType(24);
    pub const CLASS: AttrType = AttrType(25);
    pub const VENDOR_SPECIFIC: AttrType = AttrType(26);
    pub const SESSION_TIMEOUT: AttrType = AttrType(27);
    pub const IDLE_TIMEOUT: AttrType = AttrType(28);
    pub const TERMINATION_ACTION: AttrType = AttrType(29);
    pub const CALLED_STATION_ID: AttrType = AttrType(30);
    pub const CALLING_STATION_ID: AttrType = AttrType(31);
    pub const NAS_IDENTIFIER: AttrType = AttrType(32);
    pub const PROXY_STATE: AttrType = AttrType(33);
    pub const LOGIN_LAT_SERVICE: AttrType = AttrType(34);
    pub const LOGIN_LAT_NODE: AttrType = AttrType(35);
    pub const LOGIN_LAT_GROUP: AttrType = AttrType(36);
    pub const FRAMED_APPLETALK_LINK: AttrType = AttrType(37);
    pub const FRAMED_APPLETALK_NETWORK: AttrType = AttrType(38);
    pub const FRAMED_APPLETALK_ZONE: AttrType = AttrType(39);
    // RFC 2866
    pub const ACCT_STATUS_TYPE: AttrType = AttrType(40);
    pub const ACCT_DELAY_TIME: AttrType = AttrType(41);
    pub const ACCT_INPUT_OCTETS: AttrType = AttrType(42);
    pub const ACCT_OUTPUT_OCTETS: AttrType = AttrType(43);
    pub const ACCT_SESSION_ID: AttrType = AttrType(44);
    pub const ACCT_AUTHENTIC: AttrType = AttrType(45);
    pub const ACCT_SESSION_TIME: AttrType = AttrType(46);
    pub const ACCT_INPUT_PACKETS: AttrType = AttrType(47);
    pub const ACCT_OUTPUT_PACKETS: AttrType = AttrType(48);
    pub const ACCT_TERMINATE_CAUSE: AttrType = AttrType(49);
    pub const ACCT_MULTI_SESSION_ID: AttrType = AttrType(50);
    pub const ACCT_LINK_COUNT: AttrType = AttrType(51);
    // RFC 2869
    pub const ACCT_INPUT_GIGAWORDS: AttrType = AttrType(52);
    pub const ACCT_OUTPUT_GIGAWORDS: AttrType = AttrType(53);
    pub const EVENT_TIMESTAMP: AttrType = AttrType(55);
    // RFC 2865
    pub const CHAP_CHALLENGE: AttrType = AttrType(60);
    pub const NAS_PORT_TYPE: AttrType = AttrType(61);
    pub const PORT_LIMIT: AttrType = AttrType(62);
    pub const LOGIN_LAT_PORT: AttrType = AttrType(63);
    // RFC 2868 / RFC 2867
    pub const TUNNEL_TYPE: AttrType = AttrType(64);
    pub const TUNNEL_MEDIUM_TYPE: AttrType = AttrType(65);
    pub const TUNNEL_CLIENT_ENDPOINT: AttrType = AttrType(66);
    pub const TUNNEL_SERVER_ENDPOINT: AttrType = AttrType(67);
    pub const ACCT_TUNNEL_CONNECTION: AttrType = AttrType(68);
    pub const TUNNEL_PASSWORD: AttrType = AttrType(69);
    // RFC 2869
    pub const ARAP_PASSWORD: AttrType = AttrType(70);
    pub const ARAP_FEATURES: AttrType = AttrType(71);
    pub const ARAP_ZONE_ACCESS: AttrType = AttrType(72);
    pub const ARAP_SECURITY: AttrType = AttrType(73);
    pub const ARAP_SECURITY_DATA: AttrType = AttrType(74);
    pub const PASSWORD_RETRY: AttrType = AttrType(75);
    pub const PROMPT: AttrType = AttrType(76);
    pub const CONNECT_INFO: AttrType = AttrType(77);
    pub const CONFIGURATION_TOKEN: AttrType = AttrType(78);
    pub const EAP_MESSAGE: AttrType = AttrType(79);
    pub const MESSAGE_AUTHENTICATOR: AttrType = AttrType(80);
    // RFC 2868
    pub const TUNNEL_PRIVATE_GROUP_ID: AttrType = AttrType(81);
    pub const TUNNEL_ASSIGNMENT_ID: AttrType = AttrType(82);
    pub const TUNNEL_PREFERENCE: AttrType = AttrType(83);
    // RFC 2869
    pub const ARAP_CHALLENGE_RESPONSE: AttrType = AttrType(84);
    pub const ACCT_INTERIM_INTERVAL: AttrType = AttrType(85);
    // RFC 2867
    pub const ACCT_TUNNEL_PACKETS_LOST: AttrType = AttrType(86);
    // RFC 2869
    pub const NAS_PORT_ID: AttrType = AttrType(87);
    pub const FRAMED_POOL: AttrType = AttrType(88);
    // RFC 2868
    pub const TUNNEL_CLIENT_AUTH_ID: AttrType = AttrType(90);
    pub const TUNNEL_SERVER_AUTH_ID: AttrType = AttrType(91);
    // RFC 3162
    pub const NAS_IPV6_ADDRESS: AttrType = AttrType(95);
    pub const FRAMED_INTERFACE_ID: AttrType = AttrType(96);
    pub const FRAMED_IPV6_PREFIX: AttrType = AttrType(97);
    pub const LOGIN_IPV6_HOST: AttrType = AttrType(98);
    pub const FRAMED_IPV6_ROUTE: AttrType = AttrType(99);
    pub const FRAMED_IPV6_POOL: AttrType = AttrType(100);
    // RFC 5176
    pub const ERROR_CAUSE: AttrType = AttrType(101);
    // RFC 4818
    pub const DELEGATED_IPV6_PREFIX: AttrType = AttrType(123);
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::dict::attr_def(*self) {
            Some(d) => f.write_str(d.name),
            None => write!(f, "Attr-{}", self.0),
        }
    }
}

impl fmt::Debug for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttrType({} {})", self.0, self)
    }
}

/// SMI Network Management Private Enterprise Code of Microsoft (RFC 2548).
pub const MICROSOFT: u32 = 311;

/// Microsoft vendor attribute types (vendor [`MICROSOFT`], RFC 2548 §2).
pub mod ms {
    pub const CHAP_RESPONSE: u8 = 1;
    pub const CHAP_ERROR: u8 = 2;
    pub const CHAP_CPW_1: u8 = 3;
    pub const CHAP_CPW_2: u8 = 4;
    pub const CHAP_LM_ENC_PW: u8 = 5;
    pub const CHAP_NT_ENC_PW: u8 = 6;
    pub const MPPE_ENCRYPTION_POLICY: u8 = 7;
    pub const MPPE_ENCRYPTION_TYPES: u8 = 8;
    pub const RAS_VENDOR: u8 = 9;
    pub const CHAP_DOMAIN: u8 = 10;
    pub const CHAP_CHALLENGE: u8 = 11;
    pub const CHAP_MPPE_KEYS: u8 = 12;
    pub const BAP_USAGE: u8 = 13;
    pub const LINK_UTILIZATION_THRESHOLD: u8 = 14;
    pub const LINK_DROP_TIME_LIMIT: u8 = 15;
    pub const MPPE_SEND_KEY: u8 = 16;
    pub const MPPE_RECV_KEY: u8 = 17;
    pub const RAS_VERSION: u8 = 18;
    pub const OLD_ARAP_PASSWORD: u8 = 19;
    pub const NEW_ARAP_PASSWORD: u8 = 20;
    pub const ARAP_PASSWORD_CHANGE_REASON: u8 = 21;
    pub const FILTER: u8 = 22;
    pub const ACCT_AUTH_TYPE: u8 = 23;
    pub const ACCT_EAP_TYPE: u8 = 24;
    pub const CHAP2_RESPONSE: u8 = 25;
    pub const CHAP2_SUCCESS: u8 = 26;
    pub const CHAP2_CPW: u8 = 27;
    pub const PRIMARY_DNS_SERVER: u8 = 28;
    pub const SECONDARY_DNS_SERVER: u8 = 29;
    pub const PRIMARY_NBNS_SERVER: u8 = 30;
    pub const SECONDARY_NBNS_SERVER: u8 = 31;
    pub const ARAP_CHALLENGE: u8 = 33;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names() {
        assert_eq!(Code::ACCESS_REQUEST.name(), Some("Access-Request"));
        assert_eq!(Code::COA_NAK.to_string(), "CoA-NAK");
        assert_eq!(Code(99).to_string(), "Code-99");
        assert!(Code::ACCESS_ACCEPT.is_response());
        assert!(!Code::ACCOUNTING_REQUEST.is_response());
    }

    #[test]
    fn attr_display() {
        assert_eq!(AttrType::USER_NAME.to_string(), "User-Name");
        assert_eq!(AttrType(250).to_string(), "Attr-250");
        assert_eq!(
            format!("{:?}", AttrType(80)),
            "AttrType(80 Message-Authenticator)"
        );
    }
}
