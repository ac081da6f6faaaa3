tsc_hz=2598130600  rounds=5  stream=200 MB of 1472-byte UDP payloads
domus negotiated features=0x10000010007802b
qemu negotiated features=0x100078023
case     domus MB/s  qemu MB/s domus/qemu   rounds (domus | qemu)
rtt avg  domus 24 us  qemu 32 us  ratio 0.74
rtt min  domus 14 us  qemu 22 us  ratio 0.65
rtt median domus 28 us  qemu 28 us  ratio 1.01
