//! How the guest's CPU is virtualized: KVM where it really works, QEMU's
//! software emulation otherwise. Its own module because both ways of booting
//! (the hermetic QEMU in `boot`, virtme-ng in `vng`) need it.

/// How the CPU is virtualized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through the host's /dev/kvm.
    Kvm,
    /// QEMU's software emulation (TCG); with `-cpu max` it emulates AMD SVM,
    /// so the guest still gets a working /dev/kvm.
    Tcg,
}

impl Accel {
    /// KVM only where it really works: /dev/kvm is usable *and* the CPU
    /// advertises svm or vmx (a paravirtual /dev/kvm without them cannot boot
    /// a stock kernel). `GMEMTEST_ACCEL=tcg|kvm` overrides.
    pub fn detect() -> (Accel, String) {
        match std::env::var("GMEMTEST_ACCEL").as_deref() {
            Ok("tcg") => return (Accel::Tcg, "GMEMTEST_ACCEL=tcg".into()),
            Ok("kvm") => return (Accel::Kvm, "GMEMTEST_ACCEL=kvm".into()),
            _ => {}
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "svm" || f == "vmx"));
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        match (kvm, hw) {
            (true, true) => (Accel::Kvm, "/dev/kvm usable and the CPU has svm/vmx".into()),
            (true, false) => (
                Accel::Tcg,
                "/dev/kvm exists but the CPU advertises neither svm nor vmx (paravirtual KVM cannot boot a stock kernel)".into(),
            ),
            (false, _) => (Accel::Tcg, "no usable /dev/kvm".into()),
        }
    }
}
