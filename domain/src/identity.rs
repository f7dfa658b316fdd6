//! Who is calling: a client id, its roles and the sites it may touch ([`Principal`]). The client
//! table that maps API keys to principals is `crate::auth`'s; this module only says what a
//! principal may do (21 CFR 11.10 (d) access limits, (g) authority checks; docs/adr/0010).

use std::fmt;

use super::record::SiteId;

/// A client's id: 1 to 64 of `[A-Za-z0-9._-]` (it appears in audit events, logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_LEN: usize = 64;
    /// The caller when auth is off (no key file): every role and site, audited under this name.
    pub const ANONYMOUS: &'static str = "anonymous";
    /// The one client of an old-format key file (one raw key per line): every role and site.
    pub const LEGACY: &'static str = "legacy";

    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "a client id is 1 to {} of A-Z a-z 0-9 . _ -",
                Self::MAX_LEN
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// POST /records, POST /batches, GET /batches/{id} of its own batches, queue messages.
    Submit,
    /// GET /records/{id}, GET /records.
    Read,
    /// POST /records/{id}/review; and choosing a status other than `pending` on submission.
    Review,
    /// GET /audit, GET /records/{id}/history.
    Audit,
}

impl Role {
    pub const ALL: [(&'static str, Self); 4] = [
        ("submit", Self::Submit),
        ("read", Self::Read),
        ("review", Self::Review),
        ("audit", Self::Audit),
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == raw)
            .map(|(_, role)| *role)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, role)| *role == self)
            .map_or("unknown", |(name, _)| name)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Submit => 1,
            Self::Read => 2,
            Self::Review => 4,
            Self::Audit => 8,
        }
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const fn all() -> Self {
        Self(1 | 2 | 4 | 8)
    }

    #[must_use]
    pub const fn with(self, role: Role) -> Self {
        Self(self.0 | role.bit())
    }

    pub const fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        iter.into_iter().fold(Self::default(), Self::with)
    }
}

/// The sites a client may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sites {
    /// `"*"`: every site.
    All,
    /// These sites only (upper-cased site ids).
    Only(Vec<SiteId>),
}

impl Sites {
    pub fn holds(&self, site: &SiteId) -> bool {
        match self {
            Self::All => true,
            Self::Only(sites) => sites.contains(site),
        }
    }
}

/// How a principal came to be: it decides whether ids are scoped by client and what the
/// status rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A client of the client table.
    Named,
    /// The one client of an old-format key file: every role and site, the old freedoms, and ids
    /// derived as before (so today's clients see no change).
    Legacy,
    /// Auth is off: every role and site, ids derived as before.
    Anonymous,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub client: ClientId,
    pub roles: Roles,
    pub sites: Sites,
    pub standing: Standing,
}

/// Why a principal may not do what it asked (403). Says what is missing, never more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("client {client} does not hold the role {role}")]
    MissingRole { client: String, role: &'static str },
    #[error("client {client} may not access site {site}")]
    Site { client: String, site: String },
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            client: ClientId(ClientId::ANONYMOUS.to_owned()),
            roles: Roles::all(),
            sites: Sites::All,
            standing: Standing::Anonymous,
        }
    }

    pub fn legacy() -> Self {
        Self {
            client: ClientId(ClientId::LEGACY.to_owned()),
            roles: Roles::all(),
            sites: Sites::All,
            standing: Standing::Legacy,
        }
    }

    pub fn named(client: ClientId, roles: Roles, sites: Sites) -> Self {
        Self {
            client,
            roles,
            sites,
            standing: Standing::Named,
        }
    }

    /// [`Denied::MissingRole`] unless the principal holds `role`.
    pub fn require(&self, role: Role) -> Result<(), Denied> {
        if self.roles.has(role) {
            Ok(())
        } else {
            Err(Denied::MissingRole {
                client: self.client.to_string(),
                role: role.name(),
            })
        }
    }

    pub fn holds_site(&self, site: &SiteId) -> bool {
        self.sites.holds(site)
    }

    /// [`Denied::Site`] unless the principal holds `site`.
    pub fn require_site(&self, site: &SiteId) -> Result<(), Denied> {
        if self.holds_site(site) {
            Ok(())
        } else {
            Err(Denied::Site {
                client: self.client.to_string(),
                site: site.as_str().to_owned(),
            })
        }
    }

    /// Whether a submission may carry a status other than `pending`: a reviewer, or the legacy
    /// and anonymous callers (the old freedom).
    pub fn may_choose_status(&self) -> bool {
        self.standing != Standing::Named || self.roles.has(Role::Review)
    }

    /// The client that idempotency keys and batch ids are scoped by: `None` for legacy and
    /// anonymous callers, whose ids are derived as before.
    pub fn id_scope(&self) -> Option<&ClientId> {
        (self.standing == Standing::Named).then_some(&self.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(raw: &str) -> SiteId {
        SiteId::parse(raw).expect("site")
    }

    #[test]
    fn client_ids_are_short_and_from_a_closed_alphabet() {
        for (raw, ok) in [
            ("site001-uploader", true),
            ("qa.auditor_2", true),
            ("", false),
            ("has space", false),
            ("é", false),
            (&"a".repeat(64), true),
            (&"a".repeat(65), false),
        ] {
            assert_eq!(ClientId::parse(raw).is_ok(), ok, "{raw:?}");
        }
    }

    #[test]
    fn a_principal_is_limited_to_its_roles_and_sites() {
        let uploader = Principal::named(
            ClientId::parse("site001-uploader").expect("id"),
            [Role::Submit].into_iter().collect(),
            Sites::Only(vec![site("SITE001")]),
        );
        assert!(uploader.require(Role::Submit).is_ok());
        assert!(uploader.require(Role::Read).is_err());
        assert!(
            uploader.holds_site(&site("site001")),
            "site ids are case-blind"
        );
        assert!(!uploader.holds_site(&site("SITE002")));
        assert!(!uploader.may_choose_status(), "no review role");
        assert!(uploader.id_scope().is_some(), "its ids are its own");
        for open in [Principal::legacy(), Principal::anonymous()] {
            assert!(open.require(Role::Audit).is_ok());
            assert!(open.holds_site(&site("ANY001")));
            assert!(open.may_choose_status(), "the old freedom");
            assert!(open.id_scope().is_none(), "ids derived as before");
        }
        let err = uploader.require(Role::Review).expect_err("denied");
        assert_eq!(
            err.to_string(),
            "client site001-uploader does not hold the role review"
        );
    }
}
