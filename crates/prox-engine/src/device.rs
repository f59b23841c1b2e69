//! Where the engine runs: `cpu`, `cuda` (the first GPU) or `cuda:N`.
//!
//! The name is parsed without touching any device ([`DeviceSpec`]), so a command line can be
//! checked before a model is loaded; [`DeviceSpec::open`] then gives candle's [`Device`]. A
//! build without the `cuda` feature parses `cuda` too, and says how to get a build that runs
//! it instead of failing with candle's generic error.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{Error, Result};

/// Whether this build can run models on CUDA GPUs (the `cuda` feature).
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

/// A device by name, not yet opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The CPU (every build).
    #[default]
    Cpu,
    /// The CUDA GPU of this index (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// Parses `cpu`, `cuda` or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Device {
            device: text.to_owned(),
            reason: reason.to_owned(),
        };
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match text.strip_prefix("cuda:") {
                // Digits only: `usize::from_str` would also take `+1`.
                Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                    index
                        .parse()
                        .map(DeviceSpec::Cuda)
                        .map_err(|_| invalid("the GPU index is too large"))
                }
                Some(_) => Err(invalid(
                    "expected `cuda:N`, N the index of the GPU (0 for the first)",
                )),
                None => Err(invalid("expected `cpu`, `cuda` or `cuda:N`")),
            },
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, DeviceSpec::Cuda(_))
    }

    /// Opens the device. CUDA needs a build with the `cuda` feature, an NVIDIA driver and a
    /// GPU of that index; each missing piece is an error that names it.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(index) => {
                if !CUDA_BUILD {
                    return Err(Error::Device {
                        device: self.to_string(),
                        reason: "built without the `cuda` feature; rebuild with `--features \
                                 cuda` (and a CUDA toolkit: see scripts/check-cuda.sh)"
                            .to_owned(),
                    });
                }
                Device::new_cuda(index).map_err(|e| Error::Device {
                    device: self.to_string(),
                    reason: format!(
                        "cannot open it (is there an NVIDIA GPU of this index and its driver?): \
                         {}",
                        crate::load::error_chain(&e)
                    ),
                })
            }
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        DeviceSpec::parse(text)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Parses a device name (`cpu`, `cuda`, `cuda:N`) and opens the device.
pub fn parse_device(text: &str) -> Result<Device> {
    DeviceSpec::parse(text)?.open()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:0").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:1").unwrap(), DeviceSpec::Cuda(1));
        assert_eq!(
            "cuda:12".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Cuda(12)
        );
        assert_eq!(DeviceSpec::default(), DeviceSpec::Cpu);
        for spec in [DeviceSpec::Cpu, DeviceSpec::Cuda(3)] {
            assert_eq!(DeviceSpec::parse(&spec.to_string()).unwrap(), spec);
        }
    }

    #[test]
    fn other_names_are_errors_that_say_what_is_expected() {
        for bad in [
            "",
            "gpu",
            "CPU",
            "cuda:",
            "cuda:-1",
            "cuda:+1",
            "cuda:1x",
            "cuda: 1",
            " cpu",
            "cuda1",
            "metal",
            "cuda:99999999999999999999999",
        ] {
            let err = DeviceSpec::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
            assert!(err.contains("cuda"), "{bad}: {err}");
        }
        let err = parse_device("gpu").unwrap_err().to_string();
        assert!(err.contains("expected `cpu`, `cuda` or `cuda:N`"), "{err}");
    }

    #[test]
    fn the_cpu_opens_everywhere() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        assert!(!DeviceSpec::Cpu.is_cuda());
        assert!(DeviceSpec::Cuda(0).is_cuda());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        for name in ["cuda", "cuda:1"] {
            let err = parse_device(name).unwrap_err().to_string();
            assert!(
                err.contains("built without the `cuda` feature; rebuild with `--features cuda`"),
                "{err}"
            );
        }
    }
}
