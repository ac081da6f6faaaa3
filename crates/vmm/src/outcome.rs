//! How a domain stopped, and the exit status that reports it (documented in `domus-vmm --help`).

use serde::Serialize;

/// Why the guest stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// ACPI S5 (or a KVM shutdown system event): exit status 0.
    Poweroff,
    /// i8042 reset, ACPI reset register, triple fault, control-socket reset: exit status 2.
    Reboot,
    /// pvpanic, emulation failure, any other fatal vCPU exit: exit status 3.
    Crash,
}

/// The outcome of a domain: a reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Why the guest stopped.
    pub reason: Reason,
    /// What exactly happened (e.g. "ACPI S5 (PM1a_CNT=0x3400)").
    pub detail: String,
}

impl Outcome {
    /// A new outcome.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    /// The process exit status for this outcome (0 poweroff, 2 reboot, 3 crash).
    pub fn exit_code(&self) -> u8 {
        match self.reason {
            Reason::Poweroff => 0,
            Reason::Reboot => 2,
            Reason::Crash => 3,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = match self.reason {
            Reason::Poweroff => "powered off",
            Reason::Reboot => "rebooted",
            Reason::Crash => "crashed",
        };
        write!(f, "guest {word}: {}", self.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_outcomes() {
        assert_eq!(Outcome::new(Reason::Poweroff, "x").exit_code(), 0);
        assert_eq!(Outcome::new(Reason::Reboot, "x").exit_code(), 2);
        assert_eq!(Outcome::new(Reason::Crash, "x").exit_code(), 3);
        let json = serde_json::to_string(&Outcome::new(Reason::Crash, "pvpanic")).unwrap();
        assert_eq!(json, r#"{"reason":"crash","detail":"pvpanic"}"#);
    }
}
