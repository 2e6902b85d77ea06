//! Static dictionary of attribute names, data types and named values, for logs and
//! configuration.
//!
//! Covers RFC 2865, 2866, 2867, 2868, 2869, 3162, 3576/5176 (Error-Cause), 4818 and the
//! RFC 2548 Microsoft vendor attributes. Name lookups are ASCII case-insensitive.
//!
//! * [`attr_by_name`], [`attr_def`], [`vendor_attr_by_name`], [`vendor_attr_def`]: lookups.
//! * [`AttrValue::parse`]: a configuration `name = value` pair to wire bytes.
//! * [`display_attr`], [`display_value`], [`display_vendor_value`]: log formatting;
//!   sensitive attributes (passwords, CHAP and MS-CHAP responses, MPPE keys, EAP
//!   payloads) always print as `<hidden>`.
//!
//! Not the hot path: lookups by type are a table index, lookups by name a linear scan.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::attr::{AttrType, MICROSOFT};
use crate::builder::PacketBuilder;
use crate::error::{EncodeError, ValueError};
use crate::raw::{split_vsa, MAX_ATTR_VALUE_LEN, MAX_VSA_VALUE_LEN};

/// Data type of an attribute value (RFC 8044 names in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// UTF-8 text (text).
    Text,
    /// Opaque octets (string).
    Octets,
    /// 32-bit unsigned integer, possibly with named values (integer / enum).
    Integer,
    /// IPv4 address (ipv4addr).
    IpAddr,
    /// IPv6 address (ipv6addr).
    Ipv6Addr,
    /// IPv6 prefix: reserved octet, prefix length, prefix octets (ipv6prefix).
    Ipv6Prefix,
    /// 8-octet interface identifier (ifid).
    Ifid,
    /// Seconds since 1970-01-01 UTC (time).
    Date,
    /// Vendor-Specific container (vsa).
    Vsa,
}

/// A named value of an integer attribute.
pub type NamedValue = (&'static str, u32);

/// Dictionary entry of a standard attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttrDef {
    pub name: &'static str,
    pub attr_type: AttrType,
    pub data_type: DataType,
    /// Carries an RFC 2868 tag octet.
    pub tagged: bool,
    /// Must never be printed: formatters show `<hidden>`.
    pub sensitive: bool,
    /// Encrypted on the wire (User-Password, Tunnel-Password, ...): cannot be set from a
    /// plain configuration value; use the helpers in [`crate::crypto`].
    pub encrypted: bool,
    pub values: &'static [NamedValue],
}

/// Dictionary entry of a vendor sub-attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VendorAttrDef {
    pub name: &'static str,
    pub vendor: u32,
    pub vendor_type: u8,
    pub data_type: DataType,
    pub sensitive: bool,
    pub encrypted: bool,
    pub values: &'static [NamedValue],
}

impl AttrDef {
    /// Number of a named value, case-insensitively.
    pub fn value_by_name(&self, name: &str) -> Option<u32> {
        find_value(self.values, name)
    }

    /// Name of a value, if it has one.
    pub fn value_name(&self, value: u32) -> Option<&'static str> {
        self.values.iter().find(|v| v.1 == value).map(|v| v.0)
    }
}

impl VendorAttrDef {
    /// Number of a named value, case-insensitively.
    pub fn value_by_name(&self, name: &str) -> Option<u32> {
        find_value(self.values, name)
    }

    /// Name of a value, if it has one.
    pub fn value_name(&self, value: u32) -> Option<&'static str> {
        self.values.iter().find(|v| v.1 == value).map(|v| v.0)
    }
}

fn find_value(values: &[NamedValue], name: &str) -> Option<u32> {
    values
        .iter()
        .find(|v| v.0.eq_ignore_ascii_case(name))
        .map(|v| v.1)
}

const fn a(name: &'static str, t: u8, data_type: DataType) -> AttrDef {
    AttrDef {
        name,
        attr_type: AttrType(t),
        data_type,
        tagged: false,
        sensitive: false,
        encrypted: false,
        values: &[],
    }
}

impl AttrDef {
    const fn tagged(mut self) -> Self {
        self.tagged = true;
        self
    }
    const fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    const fn encrypted(mut self) -> Self {
        self.sensitive = true;
        self.encrypted = true;
        self
    }
    const fn values(mut self, values: &'static [NamedValue]) -> Self {
        self.values = values;
        self
    }
}

const fn ms(name: &'static str, t: u8, data_type: DataType) -> VendorAttrDef {
    VendorAttrDef {
        name,
        vendor: MICROSOFT,
        vendor_type: t,
        data_type,
        sensitive: false,
        encrypted: false,
        values: &[],
    }
}

impl VendorAttrDef {
    const fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    const fn encrypted(mut self) -> Self {
        self.sensitive = true;
        self.encrypted = true;
        self
    }
    const fn values(mut self, values: &'static [NamedValue]) -> Self {
        self.values = values;
        self
    }
}

use DataType::{Date, Ifid, Integer, IpAddr, Ipv6Addr as Ip6, Ipv6Prefix, Octets, Text, Vsa};

const SERVICE_TYPE: &[NamedValue] = &[
    ("Login-User", 1),
    ("Framed-User", 2),
    ("Callback-Login-User", 3),
    ("Callback-Framed-User", 4),
    ("Outbound-User", 5),
    ("Administrative-User", 6),
    ("NAS-Prompt-User", 7),
    ("Authenticate-Only", 8),
    ("Callback-NAS-Prompt", 9),
    ("Call-Check", 10),
    ("Callback-Administrative", 11),
    ("Authorize-Only", 17),
];
const FRAMED_PROTOCOL: &[NamedValue] = &[
    ("PPP", 1),
    ("SLIP", 2),
    ("ARAP", 3),
    ("Gandalf-SLML", 4),
    ("Xylogics-IPX-SLIP", 5),
    ("X.75-Synchronous", 6),
];
const FRAMED_ROUTING: &[NamedValue] = &[
    ("None", 0),
    ("Broadcast", 1),
    ("Listen", 2),
    ("Broadcast-Listen", 3),
];
const FRAMED_COMPRESSION: &[NamedValue] = &[
    ("None", 0),
    ("Van-Jacobson-TCP-IP", 1),
    ("IPX-Header-Compression", 2),
    ("Stac-LZS", 3),
];
const LOGIN_SERVICE: &[NamedValue] = &[
    ("Telnet", 0),
    ("Rlogin", 1),
    ("TCP-Clear", 2),
    ("PortMaster", 3),
    ("LAT", 4),
    ("X25-PAD", 5),
    ("X25-T3POS", 6),
    ("TCP-Clear-Quiet", 8),
];
const TERMINATION_ACTION: &[NamedValue] = &[("Default", 0), ("RADIUS-Request", 1)];
const ACCT_STATUS_TYPE: &[NamedValue] = &[
    ("Start", 1),
    ("Stop", 2),
    ("Interim-Update", 3),
    ("Accounting-On", 7),
    ("Accounting-Off", 8),
    ("Tunnel-Start", 9),
    ("Tunnel-Stop", 10),
    ("Tunnel-Reject", 11),
    ("Tunnel-Link-Start", 12),
    ("Tunnel-Link-Stop", 13),
    ("Tunnel-Link-Reject", 14),
    ("Failed", 15),
];
const ACCT_AUTHENTIC: &[NamedValue] =
    &[("RADIUS", 1), ("Local", 2), ("Remote", 3), ("Diameter", 4)];
const ACCT_TERMINATE_CAUSE: &[NamedValue] = &[
    ("User-Request", 1),
    ("Lost-Carrier", 2),
    ("Lost-Service", 3),
    ("Idle-Timeout", 4),
    ("Session-Timeout", 5),
    ("Admin-Reset", 6),
    ("Admin-Reboot", 7),
    ("Port-Error", 8),
    ("NAS-Error", 9),
    ("NAS-Request", 10),
    ("NAS-Reboot", 11),
    ("Port-Unneeded", 12),
    ("Port-Preempted", 13),
    ("Port-Suspended", 14),
    ("Service-Unavailable", 15),
    ("Callback", 16),
    ("User-Error", 17),
    ("Host-Request", 18),
    ("Supplicant-Restart", 19),
    ("Reauthentication-Failure", 20),
    ("Port-Reinitialized", 21),
    ("Port-Administratively-Disabled", 22),
];
const NAS_PORT_TYPE: &[NamedValue] = &[
    ("Async", 0),
    ("Sync", 1),
    ("ISDN", 2),
    ("ISDN-V120", 3),
    ("ISDN-V110", 4),
    ("Virtual", 5),
    ("PIAFS", 6),
    ("HDLC-Clear-Channel", 7),
    ("X.25", 8),
    ("X.75", 9),
    ("G.3-Fax", 10),
    ("SDSL", 11),
    ("ADSL-CAP", 12),
    ("ADSL-DMT", 13),
    ("IDSL", 14),
    ("Ethernet", 15),
    ("xDSL", 16),
    ("Cable", 17),
    ("Wireless-Other", 18),
    ("Wireless-802.11", 19),
    ("Token-Ring", 20),
    ("FDDI", 21),
    ("Wireless-CDMA2000", 22),
    ("Wireless-UMTS", 23),
    ("Wireless-1X-EV", 24),
    ("IAPP", 25),
];
const TUNNEL_TYPE: &[NamedValue] = &[
    ("PPTP", 1),
    ("L2F", 2),
    ("L2TP", 3),
    ("ATMP", 4),
    ("VTP", 5),
    ("AH", 6),
    ("IP-IP", 7),
    ("MIN-IP-IP", 8),
    ("ESP", 9),
    ("GRE", 10),
    ("DVS", 11),
    ("IP-in-IP", 12),
    ("VLAN", 13),
];
const TUNNEL_MEDIUM_TYPE: &[NamedValue] = &[
    ("IPv4", 1),
    ("IPv6", 2),
    ("NSAP", 3),
    ("HDLC", 4),
    ("BBN-1822", 5),
    ("IEEE-802", 6),
    ("E.163", 7),
    ("E.164", 8),
    ("F.69", 9),
    ("X.121", 10),
    ("IPX", 11),
    ("Appletalk", 12),
    ("DecNet-IV", 13),
    ("Banyan-Vines", 14),
    ("E.164-NSAP", 15),
];
const PROMPT: &[NamedValue] = &[("No-Echo", 0), ("Echo", 1)];
const ARAP_ZONE_ACCESS: &[NamedValue] = &[
    ("Default-Zone", 1),
    ("Zone-Filter-Inclusive", 2),
    ("Zone-Filter-Exclusive", 4),
];
const ERROR_CAUSE: &[NamedValue] = &[
    ("Residual-Context-Removed", 201),
    ("Invalid-EAP-Packet", 202),
    ("Unsupported-Attribute", 401),
    ("Missing-Attribute", 402),
    ("NAS-Identification-Mismatch", 403),
    ("Invalid-Request", 404),
    ("Unsupported-Service", 405),
    ("Unsupported-Extension", 406),
    ("Invalid-Attribute-Value", 407),
    ("Administratively-Prohibited", 501),
    ("Request-Not-Routable", 502),
    ("Session-Context-Not-Found", 503),
    ("Session-Context-Not-Removable", 504),
    ("Other-Proxy-Processing-Error", 505),
    ("Resources-Unavailable", 506),
    ("Request-Initiated", 507),
    ("Multiple-Session-Selection-Unsupported", 508),
];

const ATTRS: &[AttrDef] = &[
    // RFC 2865
    a("User-Name", 1, Text),
    a("User-Password", 2, Octets).encrypted(),
    a("CHAP-Password", 3, Octets).sensitive(),
    a("NAS-IP-Address", 4, IpAddr),
    a("NAS-Port", 5, Integer),
    a("Service-Type", 6, Integer).values(SERVICE_TYPE),
    a("Framed-Protocol", 7, Integer).values(FRAMED_PROTOCOL),
    a("Framed-IP-Address", 8, IpAddr),
    a("Framed-IP-Netmask", 9, IpAddr),
    a("Framed-Routing", 10, Integer).values(FRAMED_ROUTING),
    a("Filter-Id", 11, Text),
    a("Framed-MTU", 12, Integer),
    a("Framed-Compression", 13, Integer).values(FRAMED_COMPRESSION),
    a("Login-IP-Host", 14, IpAddr),
    a("Login-Service", 15, Integer).values(LOGIN_SERVICE),
    a("Login-TCP-Port", 16, Integer),
    a("Reply-Message", 18, Text),
    a("Callback-Number", 19, Text),
    a("Callback-Id", 20, Text),
    a("Framed-Route", 22, Text),
    a("Framed-IPX-Network", 23, IpAddr),
    a("State", 24, Octets),
    a("Class", 25, Octets),
    a("Vendor-Specific", 26, Vsa),
    a("Session-Timeout", 27, Integer),
    a("Idle-Timeout", 28, Integer),
    a("Termination-Action", 29, Integer).values(TERMINATION_ACTION),
    a("Called-Station-Id", 30, Text),
    a("Calling-Station-Id", 31, Text),
    a("NAS-Identifier", 32, Text),
    a("Proxy-State", 33, Octets),
    a("Login-LAT-Service", 34, Text),
    a("Login-LAT-Node", 35, Text),
    a("Login-LAT-Group", 36, Octets),
    a("Framed-AppleTalk-Link", 37, Integer),
    a("Framed-AppleTalk-Network", 38, Integer),
    a("Framed-AppleTalk-Zone", 39, Text),
    // RFC 2866
    a("Acct-Status-Type", 40, Integer).values(ACCT_STATUS_TYPE),
    a("Acct-Delay-Time", 41, Integer),
    a("Acct-Input-Octets", 42, Integer),
    a("Acct-Output-Octets", 43, Integer),
    a("Acct-Session-Id", 44, Text),
    a("Acct-Authentic", 45, Integer).values(ACCT_AUTHENTIC),
    a("Acct-Session-Time", 46, Integer),
    a("Acct-Input-Packets", 47, Integer),
    a("Acct-Output-Packets", 48, Integer),
    a("Acct-Terminate-Cause", 49, Integer).values(ACCT_TERMINATE_CAUSE),
    a("Acct-Multi-Session-Id", 50, Text),
    a("Acct-Link-Count", 51, Integer),
    // RFC 2869
    a("Acct-Input-Gigawords", 52, Integer),
    a("Acct-Output-Gigawords", 53, Integer),
    a("Event-Timestamp", 55, Date),
    // RFC 2865
    a("CHAP-Challenge", 60, Octets),
    a("NAS-Port-Type", 61, Integer).values(NAS_PORT_TYPE),
    a("Port-Limit", 62, Integer),
    a("Login-LAT-Port", 63, Text),
    // RFC 2868 / 2867
    a("Tunnel-Type", 64, Integer).tagged().values(TUNNEL_TYPE),
    a("Tunnel-Medium-Type", 65, Integer)
        .tagged()
        .values(TUNNEL_MEDIUM_TYPE),
    a("Tunnel-Client-Endpoint", 66, Text).tagged(),
    a("Tunnel-Server-Endpoint", 67, Text).tagged(),
    a("Acct-Tunnel-Connection", 68, Text),
    a("Tunnel-Password", 69, Octets).tagged().encrypted(),
    // RFC 2869
    a("ARAP-Password", 70, Octets).encrypted(),
    a("ARAP-Features", 71, Octets),
    a("ARAP-Zone-Access", 72, Integer).values(ARAP_ZONE_ACCESS),
    a("ARAP-Security", 73, Integer),
    a("ARAP-Security-Data", 74, Text),
    a("Password-Retry", 75, Integer),
    a("Prompt", 76, Integer).values(PROMPT),
    a("Connect-Info", 77, Text),
    a("Configuration-Token", 78, Text),
    // EAP payloads can carry EAP-MD5 responses or cleartext EAP-GTC data.
    a("EAP-Message", 79, Octets).sensitive(),
    a("Message-Authenticator", 80, Octets),
    // RFC 2868
    a("Tunnel-Private-Group-Id", 81, Text).tagged(),
    a("Tunnel-Assignment-Id", 82, Text).tagged(),
    a("Tunnel-Preference", 83, Integer).tagged(),
    // RFC 2869 / 2867
    a("ARAP-Challenge-Response", 84, Octets).sensitive(),
    a("Acct-Interim-Interval", 85, Integer),
    a("Acct-Tunnel-Packets-Lost", 86, Integer),
    a("NAS-Port-Id", 87, Text),
    a("Framed-Pool", 88, Text),
    // RFC 2868
    a("Tunnel-Client-Auth-Id", 90, Text).tagged(),
    a("Tunnel-Server-Auth-Id", 91, Text).tagged(),
    // RFC 3162
    a("NAS-IPv6-Address", 95, Ip6),
    a("Framed-Interface-Id", 96, Ifid),
    a("Framed-IPv6-Prefix", 97, Ipv6Prefix),
    a("Login-IPv6-Host", 98, Ip6),
    a("Framed-IPv6-Route", 99, Text),
    a("Framed-IPv6-Pool", 100, Text),
    // RFC 5176
    a("Error-Cause", 101, Integer).values(ERROR_CAUSE),
    // RFC 4818
    a("Delegated-IPv6-Prefix", 123, Ipv6Prefix),
];

const MS_MPPE_ENCRYPTION_POLICY: &[NamedValue] =
    &[("Encryption-Allowed", 1), ("Encryption-Required", 2)];
const MS_MPPE_ENCRYPTION_TYPES: &[NamedValue] = &[
    ("RC4-40bit-Allowed", 2),
    ("RC4-128bit-Allowed", 4),
    ("RC4-40or128-bit-Allowed", 6),
];
const MS_BAP_USAGE: &[NamedValue] = &[("Not-Allowed", 0), ("Allowed", 1), ("Required", 2)];
const MS_ARAP_PW_CHANGE_REASON: &[NamedValue] = &[
    ("Just-Change-Password", 1),
    ("Expired-Password", 2),
    ("Admin-Requires-Password-Change", 3),
    ("Password-Too-Short", 4),
];
const MS_ACCT_AUTH_TYPE: &[NamedValue] = &[
    ("PAP", 1),
    ("CHAP", 2),
    ("MS-CHAP-1", 3),
    ("MS-CHAP-2", 4),
    ("EAP", 5),
];
const MS_ACCT_EAP_TYPE: &[NamedValue] = &[
    ("MD5", 4),
    ("OTP", 5),
    ("Generic-Token-Card", 6),
    ("TLS", 13),
];

const VENDOR_ATTRS: &[VendorAttrDef] = &[
    ms("MS-CHAP-Response", 1, Octets).sensitive(),
    ms("MS-CHAP-Error", 2, Text),
    ms("MS-CHAP-CPW-1", 3, Octets).sensitive(),
    ms("MS-CHAP-CPW-2", 4, Octets).sensitive(),
    ms("MS-CHAP-LM-Enc-PW", 5, Octets).sensitive(),
    ms("MS-CHAP-NT-Enc-PW", 6, Octets).sensitive(),
    ms("MS-MPPE-Encryption-Policy", 7, Integer).values(MS_MPPE_ENCRYPTION_POLICY),
    ms("MS-MPPE-Encryption-Types", 8, Integer).values(MS_MPPE_ENCRYPTION_TYPES),
    ms("MS-RAS-Vendor", 9, Integer),
    ms("MS-CHAP-Domain", 10, Text),
    ms("MS-CHAP-Challenge", 11, Octets),
    ms("MS-CHAP-MPPE-Keys", 12, Octets).encrypted(),
    ms("MS-BAP-Usage", 13, Integer).values(MS_BAP_USAGE),
    ms("MS-Link-Utilization-Threshold", 14, Integer),
    ms("MS-Link-Drop-Time-Limit", 15, Integer),
    ms("MS-MPPE-Send-Key", 16, Octets).encrypted(),
    ms("MS-MPPE-Recv-Key", 17, Octets).encrypted(),
    ms("MS-RAS-Version", 18, Text),
    ms("MS-Old-ARAP-Password", 19, Octets).sensitive(),
    ms("MS-New-ARAP-Password", 20, Octets).sensitive(),
    ms("MS-ARAP-PW-Change-Reason", 21, Integer).values(MS_ARAP_PW_CHANGE_REASON),
    ms("MS-Filter", 22, Octets),
    ms("MS-Acct-Auth-Type", 23, Integer).values(MS_ACCT_AUTH_TYPE),
    ms("MS-Acct-EAP-Type", 24, Integer).values(MS_ACCT_EAP_TYPE),
    ms("MS-CHAP2-Response", 25, Octets).sensitive(),
    ms("MS-CHAP2-Success", 26, Octets).sensitive(),
    ms("MS-CHAP2-CPW", 27, Octets).sensitive(),
    ms("MS-Primary-DNS-Server", 28, IpAddr),
    ms("MS-Secondary-DNS-Server", 29, IpAddr),
    ms("MS-Primary-NBNS-Server", 30, IpAddr),
    ms("MS-Secondary-NBNS-Server", 31, IpAddr),
    ms("MS-ARAP-Challenge", 33, Octets),
];

/// Every standard attribute known to the dictionary, in type order.
pub static ATTRIBUTES: &[AttrDef] = ATTRS;
/// Every vendor attribute known to the dictionary.
pub static VENDOR_ATTRIBUTES: &[VendorAttrDef] = VENDOR_ATTRS;

/// `INDEX[type] - 1` is the position of the type in `ATTRS`; 0 means unknown.
static INDEX: [u8; 256] = {
    let mut idx = [0u8; 256];
    let mut i = 0;
    while i < ATTRS.len() {
        idx[ATTRS[i].attr_type.0 as usize] = (i + 1) as u8;
        i += 1;
    }
    idx
};

/// Data type of a standard attribute, usable in constants (the rules module builds its
/// length table from it at compile time).
pub(crate) const fn const_data_type(attr_type: AttrType) -> Option<DataType> {
    let i = INDEX[attr_type.0 as usize] as usize;
    if i == 0 {
        None
    } else {
        Some(ATTRS[i - 1].data_type)
    }
}

/// Dictionary entry of a standard attribute type.
pub fn attr_def(attr_type: AttrType) -> Option<&'static AttrDef> {
    let i = usize::from(INDEX[usize::from(attr_type.0)]);
    i.checked_sub(1).and_then(|i| ATTRIBUTES.get(i))
}

/// Dictionary entry of a standard attribute by name (case-insensitive).
pub fn attr_by_name(name: &str) -> Option<&'static AttrDef> {
    ATTRIBUTES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Dictionary entry of a vendor attribute.
pub fn vendor_attr_def(vendor: u32, vendor_type: u8) -> Option<&'static VendorAttrDef> {
    VENDOR_ATTRIBUTES
        .iter()
        .find(|d| d.vendor == vendor && d.vendor_type == vendor_type)
}

/// Dictionary entry of a vendor attribute by name (case-insensitive).
pub fn vendor_attr_by_name(name: &str) -> Option<&'static VendorAttrDef> {
    VENDOR_ATTRIBUTES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Name of a vendor, if known.
pub fn vendor_name(vendor: u32) -> Option<&'static str> {
    match vendor {
        MICROSOFT => Some("Microsoft"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Parsing configuration values.

/// Where an [`AttrValue`] goes in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrTarget {
    /// A standard attribute.
    Standard(AttrType),
    /// A sub-attribute of a Vendor-Specific attribute (RFC 2865 §5.26 format).
    Vendor { vendor: u32, vendor_type: u8 },
}

/// An attribute value parsed from configuration, as wire bytes (tag included).
#[derive(Clone, PartialEq, Eq)]
pub struct AttrValue {
    pub target: AttrTarget,
    pub value: Vec<u8>,
}

impl AttrValue {
    /// Parse `name = value` from configuration.
    ///
    /// `name` is a dictionary name (case-insensitive), optionally followed by `:tag`
    /// (1..=31) for RFC 2868 tagged attributes (`Tunnel-Type:1`), or `Attr-N` for an
    /// attribute the dictionary does not know (value then taken as octets). Values:
    ///
    /// | type | accepted |
    /// | --- | --- |
    /// | integer | a named value (`Framed-User`) or a decimal / `0x` hex number |
    /// | text | the string as UTF-8 |
    /// | string | `0x` followed by hex digits, or else the string's UTF-8 octets |
    /// | ipaddr / ipv6addr | the usual address notation |
    /// | ipv6prefix | `2001:db8::/32` |
    /// | ifid | `0011:2233:4455:6677` or 16 hex digits |
    /// | date | seconds since the epoch, decimal |
    /// | Vendor-Specific | `0x` hex of the whole value |
    ///
    /// Encrypted attributes (User-Password, Tunnel-Password, MS-MPPE keys, ...) are
    /// refused: they are produced per request by [`crate::crypto`].
    pub fn parse(name: &str, value: &str) -> Result<Self, ValueError> {
        let (base, tag) = split_tag(name);
        if let Some(def) = attr_by_name(base) {
            if def.encrypted {
                return Err(ValueError::Encrypted {
                    attribute: def.name.to_owned(),
                });
            }
            if tag.is_some() && !def.tagged {
                return Err(ValueError::BadTag {
                    attribute: def.name.to_owned(),
                });
            }
            let bytes = parse_typed(def.name, def.data_type, def.values, def.tagged, tag, value)?;
            return Self::checked(AttrTarget::Standard(def.attr_type), def.name, bytes);
        }
        if let Some(def) = vendor_attr_by_name(base) {
            if def.encrypted {
                return Err(ValueError::Encrypted {
                    attribute: def.name.to_owned(),
                });
            }
            if tag.is_some() {
                return Err(ValueError::BadTag {
                    attribute: def.name.to_owned(),
                });
            }
            let bytes = parse_typed(def.name, def.data_type, def.values, false, None, value)?;
            let target = AttrTarget::Vendor {
                vendor: def.vendor,
                vendor_type: def.vendor_type,
            };
            return Self::checked(target, def.name, bytes);
        }
        if let Some(n) = base
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("Attr-"))
            .and_then(|_| base.get(5..))
            .and_then(|n| n.parse::<u8>().ok())
        {
            if tag.is_none() && n != 0 {
                let bytes = parse_typed(base, Octets, &[], false, None, value)?;
                return Self::checked(AttrTarget::Standard(AttrType(n)), base, bytes);
            }
        }
        Err(ValueError::UnknownAttribute {
            name: name.to_owned(),
        })
    }

    fn checked(target: AttrTarget, name: &str, value: Vec<u8>) -> Result<Self, ValueError> {
        let max = match target {
            AttrTarget::Standard(_) => MAX_ATTR_VALUE_LEN,
            AttrTarget::Vendor { .. } => MAX_VSA_VALUE_LEN,
        };
        if value.len() > max {
            return Err(ValueError::TooLong {
                attribute: name.to_owned(),
                len: value.len(),
            });
        }
        Ok(Self { target, value })
    }

    /// Append this attribute to a packet under construction.
    pub fn push_to(&self, builder: &mut PacketBuilder) -> Result<(), EncodeError> {
        match self.target {
            AttrTarget::Standard(t) => builder.push(t, &self.value),
            AttrTarget::Vendor {
                vendor,
                vendor_type,
            } => builder.push_vsa(vendor, vendor_type, &self.value),
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            AttrTarget::Standard(t) => display_attr(t, &self.value).fmt(f),
            AttrTarget::Vendor {
                vendor,
                vendor_type,
            } => {
                write_vendor_name(f, vendor, vendor_type)?;
                f.write_str(" = ")?;
                display_vendor_value(vendor, vendor_type, &self.value).fmt(f)
            }
        }
    }
}

impl fmt::Debug for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttrValue({self})")
    }
}

fn split_tag(name: &str) -> (&str, Option<u8>) {
    if let Some((base, tag)) = name.rsplit_once(':') {
        if let Ok(t) = tag.parse::<u8>() {
            return (base, Some(t));
        }
    }
    (name, None)
}

fn invalid(name: &str, expected: &'static str) -> ValueError {
    ValueError::InvalidValue {
        attribute: name.to_owned(),
        expected,
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_typed(
    name: &str,
    data_type: DataType,
    values: &[NamedValue],
    tagged: bool,
    tag: Option<u8>,
    s: &str,
) -> Result<Vec<u8>, ValueError> {
    if let Some(t) = tag {
        if t == 0 || t > 0x1F {
            return Err(ValueError::BadTag {
                attribute: name.to_owned(),
            });
        }
    }
    let s = s.trim();
    let mut out = Vec::new();
    match data_type {
        Integer => {
            let n = find_value(values, s)
                .or_else(|| parse_u32(s))
                .ok_or_else(|| invalid(name, "a named value or a number"))?;
            if tagged {
                if n > 0x00FF_FFFF {
                    return Err(invalid(name, "a number below 2^24"));
                }
                out.push(tag.unwrap_or(0));
                out.extend_from_slice(&n.to_be_bytes()[1..]);
            } else {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Text => {
            if tagged {
                match tag {
                    Some(t) => out.push(t),
                    // An untagged value must not start with something that reads as a tag.
                    None if s.as_bytes().first().is_some_and(|b| *b <= 0x1F) => out.push(0),
                    None => {}
                }
            }
            out.extend_from_slice(s.as_bytes());
        }
        Octets | Vsa => {
            if tagged {
                out.push(tag.unwrap_or(0));
            }
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => out.extend(parse_hex(h).ok_or_else(|| invalid(name, "hex octets"))?),
                None if data_type == Vsa => return Err(invalid(name, "0x-prefixed hex")),
                None => out.extend_from_slice(s.as_bytes()),
            }
        }
        IpAddr => {
            let ip: Ipv4Addr = s.parse().map_err(|_| invalid(name, "an IPv4 address"))?;
            out.extend_from_slice(&ip.octets());
        }
        Ip6 => {
            let ip: Ipv6Addr = s.parse().map_err(|_| invalid(name, "an IPv6 address"))?;
            out.extend_from_slice(&ip.octets());
        }
        Ipv6Prefix => {
            let err = || invalid(name, "an IPv6 prefix like 2001:db8::/32");
            let (addr, len) = s.split_once('/').ok_or_else(err)?;
            let ip: Ipv6Addr = addr.parse().map_err(|_| err())?;
            let plen: u8 = len.parse().map_err(|_| err())?;
            if plen > 128 {
                return Err(err());
            }
            let mut octets = ip.octets();
            // Clear host bits; send only the octets the prefix covers (RFC 3162 §2.3).
            let bits = u128::from_be_bytes(octets)
                & u128::MAX.checked_shl(128 - u32::from(plen)).unwrap_or(0);
            octets = bits.to_be_bytes();
            out.push(0);
            out.push(plen);
            out.extend_from_slice(&octets[..usize::from(plen).div_ceil(8)]);
        }
        Ifid => {
            let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
            let bytes = parse_hex(&hex)
                .filter(|b| b.len() == 8)
                .ok_or_else(|| invalid(name, "an 8-octet interface id"))?;
            out.extend(bytes);
        }
        Date => {
            let n: u32 = s
                .parse()
                .map_err(|_| invalid(name, "seconds since the epoch"))?;
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    Ok(out)
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Formatting for logs.

/// `Name = value` of one standard attribute, for logs (sensitive values hidden).
pub fn display_attr(attr_type: AttrType, value: &[u8]) -> AttrDisplay<'_> {
    AttrDisplay { attr_type, value }
}

/// The value of one standard attribute, for logs (sensitive values hidden).
pub fn display_value(attr_type: AttrType, value: &[u8]) -> ValueDisplay<'_> {
    ValueDisplay {
        kind: Kind::Standard(attr_type),
        value,
    }
}

/// The value of one vendor sub-attribute, for logs (sensitive values hidden).
pub fn display_vendor_value(vendor: u32, vendor_type: u8, value: &[u8]) -> ValueDisplay<'_> {
    ValueDisplay {
        kind: Kind::Vendor(vendor, vendor_type),
        value,
    }
}

/// See [`display_attr`].
#[derive(Clone, Copy)]
pub struct AttrDisplay<'a> {
    attr_type: AttrType,
    value: &'a [u8],
}

/// See [`display_value`].
#[derive(Clone, Copy)]
pub struct ValueDisplay<'a> {
    kind: Kind,
    value: &'a [u8],
}

#[derive(Clone, Copy)]
enum Kind {
    Standard(AttrType),
    Vendor(u32, u8),
}

fn write_vendor_name(f: &mut fmt::Formatter<'_>, vendor: u32, vendor_type: u8) -> fmt::Result {
    match vendor_attr_def(vendor, vendor_type) {
        Some(d) => f.write_str(d.name),
        None => write!(f, "Vendor-{vendor}-Attr-{vendor_type}"),
    }
}

impl fmt::Display for AttrDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.attr_type;
        if t == AttrType::VENDOR_SPECIFIC {
            if let Some((vendor, subs)) = split_vsa(self.value) {
                f.write_str("Vendor-Specific = {")?;
                for (i, (vt, v)) in subs.enumerate() {
                    f.write_str(if i == 0 { " " } else { ", " })?;
                    write_vendor_name(f, vendor, vt)?;
                    write!(f, " = {}", display_vendor_value(vendor, vt, v))?;
                }
                return f.write_str(" }");
            }
        }
        write!(f, "{t}")?;
        if let Some(def) = attr_def(t) {
            if def.tagged {
                if let Some(&tag) = self.value.first() {
                    if (1..=0x1F).contains(&tag) {
                        write!(f, ":{tag}")?;
                    }
                }
            }
        }
        write!(f, " = {}", display_value(t, self.value))
    }
}

impl fmt::Debug for AttrDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ValueDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (data_type, values, tagged, sensitive) = match self.kind {
            Kind::Standard(t) => match attr_def(t) {
                Some(d) => (d.data_type, d.values, d.tagged, d.sensitive),
                None => (Octets, &[][..], false, false),
            },
            Kind::Vendor(v, vt) => match vendor_attr_def(v, vt) {
                Some(d) => (d.data_type, d.values, false, d.sensitive),
                None => (Octets, &[][..], false, false),
            },
        };
        if sensitive {
            return f.write_str("<hidden>");
        }
        let mut v = self.value;
        if tagged {
            match (data_type, v.split_first()) {
                (Integer, Some((_, rest))) if rest.len() == 3 => {
                    let n = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]);
                    return write_integer(f, n, values);
                }
                (_, Some((&tag, rest))) if tag <= 0x1F => v = rest,
                _ => {}
            }
        }
        match data_type {
            Text => match core::str::from_utf8(v) {
                Ok(s) => write!(f, "\"{}\"", s.escape_debug()),
                Err(_) => write_hex(f, v),
            },
            Integer | Date => match <[u8; 4]>::try_from(v) {
                Ok(b) if data_type == Integer => write_integer(f, u32::from_be_bytes(b), values),
                Ok(b) => write!(f, "{}", u32::from_be_bytes(b)),
                Err(_) => write_hex(f, v),
            },
            IpAddr => match <[u8; 4]>::try_from(v) {
                Ok(b) => write!(f, "{}", Ipv4Addr::from(b)),
                Err(_) => write_hex(f, v),
            },
            Ip6 => match <[u8; 16]>::try_from(v) {
                Ok(b) => write!(f, "{}", Ipv6Addr::from(b)),
                Err(_) => write_hex(f, v),
            },
            Ipv6Prefix => match v {
                [_, plen, prefix @ ..] if *plen <= 128 && prefix.len() <= 16 => {
                    let mut b = [0u8; 16];
                    b[..prefix.len()].copy_from_slice(prefix);
                    write!(f, "{}/{}", Ipv6Addr::from(b), plen)
                }
                _ => write_hex(f, v),
            },
            Ifid => match v {
                [a, b, c, d, e, g, h, i] => write!(
                    f,
                    "{a:02x}{b:02x}:{c:02x}{d:02x}:{e:02x}{g:02x}:{h:02x}{i:02x}"
                ),
                _ => write_hex(f, v),
            },
            Octets | Vsa => write_hex(f, v),
        }
    }
}

impl fmt::Debug for ValueDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn write_integer(f: &mut fmt::Formatter<'_>, n: u32, values: &[NamedValue]) -> fmt::Result {
    match values.iter().find(|v| v.1 == n) {
        Some(v) => f.write_str(v.0),
        None => write!(f, "{n}"),
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, v: &[u8]) -> fmt::Result {
    f.write_str("0x")?;
    for b in v {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn index_matches_table() {
        for d in ATTRIBUTES {
            assert_eq!(attr_def(d.attr_type).unwrap().name, d.name);
            assert_eq!(attr_by_name(d.name).unwrap().attr_type, d.attr_type);
        }
        assert!(ATTRIBUTES
            .windows(2)
            .all(|w| w[0].attr_type < w[1].attr_type));
        assert!(attr_def(AttrType(17)).is_none());
        assert!(attr_def(AttrType(255)).is_none());
        for d in VENDOR_ATTRIBUTES {
            assert_eq!(
                vendor_attr_def(d.vendor, d.vendor_type).unwrap().name,
                d.name
            );
        }
    }

    #[test]
    fn lookups_are_case_insensitive() {
        assert_eq!(
            attr_by_name("framed-ip-address").unwrap().attr_type,
            AttrType::FRAMED_IP_ADDRESS
        );
        let d = vendor_attr_by_name("ms-mppe-send-key").unwrap();
        assert_eq!(
            (d.vendor, d.vendor_type),
            (MICROSOFT, crate::ms::MPPE_SEND_KEY)
        );
        assert!(d.sensitive && d.encrypted);
        let st = attr_by_name("Service-Type").unwrap();
        assert_eq!(st.value_by_name("framed-user"), Some(2));
        assert_eq!(st.value_name(2), Some("Framed-User"));
        assert_eq!(
            attr_by_name("NAS-Port-Type")
                .unwrap()
                .value_by_name("Wireless-802.11"),
            Some(19)
        );
        assert_eq!(
            attr_by_name("Acct-Status-Type")
                .unwrap()
                .value_by_name("Interim-Update"),
            Some(3)
        );
        assert!(attr_by_name("Tunnel-Type").unwrap().tagged);
        assert!(attr_by_name("No-Such-Thing").is_none());
        assert_eq!(vendor_name(MICROSOFT), Some("Microsoft"));
    }

    fn parse(name: &str, value: &str) -> Vec<u8> {
        AttrValue::parse(name, value).unwrap().value
    }

    #[test]
    fn parse_values() {
        assert_eq!(parse("Framed-IP-Address", "10.0.0.1"), [10, 0, 0, 1]);
        assert_eq!(parse("Service-Type", "Framed-User"), [0, 0, 0, 2]);
        assert_eq!(parse("service-type", "2"), [0, 0, 0, 2]);
        assert_eq!(parse("Session-Timeout", "0x10"), [0, 0, 0, 16]);
        assert_eq!(parse("Tunnel-Type:1", "VLAN"), [1, 0, 0, 13]);
        assert_eq!(parse("Tunnel-Type", "VLAN"), [0, 0, 0, 13]);
        assert_eq!(parse("Tunnel-Medium-Type:1", "IEEE-802"), [1, 0, 0, 6]);
        assert_eq!(parse("Tunnel-Private-Group-Id:1", "100"), b"\x01100");
        assert_eq!(parse("Tunnel-Private-Group-Id", "100"), b"100");
        assert_eq!(parse("Class", "0x0102"), [1, 2]);
        assert_eq!(parse("Class", "abc"), b"abc");
        assert_eq!(parse("Reply-Message", "hello"), b"hello");
        assert_eq!(parse("NAS-IPv6-Address", "2001:db8::1")[15], 1);
        assert_eq!(
            parse("Framed-IPv6-Prefix", "2001:db8::ff/32"),
            [0, 32, 0x20, 0x01, 0x0d, 0xb8]
        );
        assert_eq!(parse("Framed-IPv6-Prefix", "::/0"), [0, 0]);
        assert_eq!(
            parse("Framed-Interface-Id", "0011:2233:4455:6677"),
            [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
        );
        assert_eq!(
            parse("Event-Timestamp", "1700000000"),
            1_700_000_000u32.to_be_bytes()
        );
        let v = AttrValue::parse("MS-MPPE-Encryption-Policy", "Encryption-Required").unwrap();
        assert_eq!(
            v.target,
            AttrTarget::Vendor {
                vendor: MICROSOFT,
                vendor_type: 7
            }
        );
        assert_eq!(v.value, [0, 0, 0, 2]);
        assert_eq!(parse("Attr-200", "0xff"), [0xff]);
    }

    #[test]
    fn parse_errors() {
        let e = |n: &str, v: &str| AttrValue::parse(n, v).unwrap_err().reason();
        assert_eq!(e("Nope", "1"), "unknown_attribute");
        assert_eq!(e("Service-Type", "Bogus"), "invalid_value");
        assert_eq!(e("Framed-IP-Address", "10.0.0"), "invalid_value");
        assert_eq!(e("Class", "0x0g"), "invalid_value");
        assert_eq!(e("Class", "0x012"), "invalid_value");
        assert_eq!(e("Service-Type:1", "2"), "bad_tag");
        assert_eq!(e("Tunnel-Type:32", "VLAN"), "bad_tag");
        assert_eq!(e("Tunnel-Type", "16777216"), "invalid_value");
        assert_eq!(e("User-Password", "secret"), "encrypted_attribute");
        assert_eq!(e("Tunnel-Password:1", "secret"), "encrypted_attribute");
        assert_eq!(e("MS-MPPE-Send-Key", "0x00"), "encrypted_attribute");
        assert_eq!(e("Reply-Message", &"x".repeat(254)), "value_too_long");
        assert_eq!(e("MS-CHAP-Error", &"x".repeat(248)), "value_too_long");
        assert_eq!(e("Framed-IPv6-Prefix", "::/129"), "invalid_value");
        // The error never echoes the value.
        let msg = AttrValue::parse("Framed-IP-Address", "s3cr3t")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("s3cr3t"));
    }

    #[test]
    fn formatting() {
        let s = |t: AttrType, v: &[u8]| display_attr(t, v).to_string();
        assert_eq!(s(AttrType::USER_NAME, b"bob"), "User-Name = \"bob\"");
        assert_eq!(s(AttrType::USER_NAME, b"b\"\n"), "User-Name = \"b\\\"\\n\"");
        assert_eq!(s(AttrType::USER_NAME, &[0xff]), "User-Name = 0xff");
        assert_eq!(
            s(AttrType::USER_PASSWORD, &[1; 16]),
            "User-Password = <hidden>"
        );
        assert_eq!(
            s(AttrType::CHAP_PASSWORD, &[1; 17]),
            "CHAP-Password = <hidden>"
        );
        assert_eq!(
            s(AttrType::TUNNEL_PASSWORD, &[1; 19]),
            "Tunnel-Password:1 = <hidden>"
        );
        assert_eq!(
            s(AttrType::SERVICE_TYPE, &[0, 0, 0, 2]),
            "Service-Type = Framed-User"
        );
        assert_eq!(
            s(AttrType::SERVICE_TYPE, &[0, 0, 0, 99]),
            "Service-Type = 99"
        );
        assert_eq!(
            s(AttrType::SERVICE_TYPE, &[0, 0, 2]),
            "Service-Type = 0x000002"
        );
        assert_eq!(
            s(AttrType::TUNNEL_TYPE, &[1, 0, 0, 13]),
            "Tunnel-Type:1 = VLAN"
        );
        assert_eq!(
            s(AttrType::TUNNEL_PRIVATE_GROUP_ID, b"\x01100"),
            "Tunnel-Private-Group-Id:1 = \"100\""
        );
        assert_eq!(
            s(AttrType::FRAMED_IP_ADDRESS, &[10, 0, 0, 1]),
            "Framed-IP-Address = 10.0.0.1"
        );
        assert_eq!(s(AttrType::CLASS, &[1, 2]), "Class = 0x0102");
        assert_eq!(s(AttrType(200), &[1]), "Attr-200 = 0x01");
        assert_eq!(
            s(AttrType::FRAMED_IPV6_PREFIX, &[0, 32, 0x20, 1, 0xd, 0xb8]),
            "Framed-IPv6-Prefix = 2001:db8::/32"
        );
        assert_eq!(
            s(
                AttrType::FRAMED_INTERFACE_ID,
                &[0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
            ),
            "Framed-Interface-Id = 0011:2233:4455:6677"
        );
        assert_eq!(
            s(AttrType::EVENT_TIMESTAMP, &[0, 0, 1, 0]),
            "Event-Timestamp = 256"
        );
        let vsa = [0, 0, 1, 0x37, 16, 4, 0x80, 1, 2, 5, b'E', b'=', b'1'];
        assert_eq!(
            s(AttrType::VENDOR_SPECIFIC, &vsa),
            "Vendor-Specific = { MS-MPPE-Send-Key = <hidden>, MS-CHAP-Error = \"E=1\" }"
        );
        assert_eq!(
            s(AttrType::VENDOR_SPECIFIC, &[0, 0, 0, 9, 1, 3, 7]),
            "Vendor-Specific = { Vendor-9-Attr-1 = 0x07 }"
        );
        assert_eq!(
            s(AttrType::VENDOR_SPECIFIC, &[1, 2]),
            "Vendor-Specific = 0x0102"
        );
        let v = AttrValue::parse("MS-Primary-DNS-Server", "192.0.2.1").unwrap();
        assert_eq!(v.to_string(), "MS-Primary-DNS-Server = 192.0.2.1");
    }

    #[test]
    fn parse_then_format_round_trip() {
        for (n, v, shown) in [
            ("Service-Type", "framed-user", "Framed-User"),
            ("NAS-Port-Type", "Virtual", "Virtual"),
            ("NAS-Port-Type", "Ethernet", "Ethernet"),
            ("Acct-Status-Type", "Accounting-Off", "Accounting-Off"),
            ("Acct-Terminate-Cause", "Idle-Timeout", "Idle-Timeout"),
            ("Acct-Authentic", "RADIUS", "RADIUS"),
            ("Framed-Protocol", "PPP", "PPP"),
            ("Login-IPv6-Host", "2001:db8::5", "2001:db8::5"),
        ] {
            let p = AttrValue::parse(n, v).unwrap();
            let AttrTarget::Standard(t) = p.target else {
                panic!("standard")
            };
            assert_eq!(display_value(t, &p.value).to_string(), shown);
        }
    }
}
