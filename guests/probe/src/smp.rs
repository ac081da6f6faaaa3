//! Application-processor bring-up (INIT-SIPI-SIPI) and the real-mode trampoline.
