//! placeholder: replaced by the domus-config work.
