# A minimal systemd unit-file check (these machines run no systemd, so no systemd-analyze verify):
# every line is blank, a comment, a known [Section] header or KEY=VALUE with a KEY that systemd knows
# for that section (the subset Domus's units may use: add a key here when a unit needs it); a trailing
# backslash continues a line; every Exec* command is an absolute path that exists under `root` (the
# unpacked package) or on this system; WantedBy/RequiredBy name .target/.service units; Type is known.
# Usage: awk -v root=DIR -f scripts/check-units.awk UNIT
function bad(msg) {
    printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
    errors++
}
BEGIN {
    known["Unit"] = " Description Documentation After Before Requires Wants BindsTo PartOf Conflicts " \
        "ConditionPathExists ConditionVirtualization AssertPathExists DefaultDependencies " \
        "StartLimitIntervalSec StartLimitBurst "
    known["Service"] = " Type RemainAfterExit ExecStart ExecStartPre ExecStartPost ExecStop ExecStopPost " \
        "ExecReload KillMode KillSignal Restart RestartSec TimeoutStartSec TimeoutStopSec TimeoutSec " \
        "RuntimeDirectory RuntimeDirectoryPreserve StateDirectory LogsDirectory ConfigurationDirectory " \
        "Environment EnvironmentFile User Group LimitNOFILE LimitMEMLOCK Delegate "
    known["Install"] = " WantedBy RequiredBy Alias Also "
    types = " simple exec forking oneshot notify dbus idle "
}
/^[ \t]*([#;].*)?$/ { next }
cont { cont = ($0 ~ /\\$/); next }
/^\[[A-Za-z]+\]$/ {
    section = substr($0, 2, length($0) - 2)
    if (!(section in known)) bad("unknown section [" section "]")
    seen[section] = 1
    next
}
{
    cont = ($0 ~ /\\$/)
    if (section == "") { bad("line outside any section"); next }
    eq = index($0, "=")
    if (eq < 2) { bad("not KEY=VALUE: " $0); next }
    key = substr($0, 1, eq - 1)
    value = substr($0, eq + 1)
    if (key ~ /[ \t]/) { bad("space in key: " key); next }
    if (index(known[section], " " key " ") == 0) bad("unknown key " key " in [" section "]")
    if (key ~ /^Exec/) {
        cmd = value
        sub(/^[-@:+!]+/, "", cmd)
        split(cmd, words, /[ \t]+/)
        exe = words[1]
        if (exe !~ /^\//) bad(key " is not an absolute path: " exe)
        else if (system("test -x \"" root exe "\" || test -x \"" exe "\"") != 0) bad(key " runs a missing " exe)
    }
    if (key == "Type" && index(types, " " value " ") == 0) bad("unknown Type=" value)
    if ((key == "WantedBy" || key == "RequiredBy") && value !~ /^([A-Za-z0-9@_.-]+\.(target|service)[ \t]*)+$/)
        bad(key " names no unit: " value)
}
END {
    if (!("Unit" in seen) || !("Service" in seen) || !("Install" in seen))
        bad("missing [Unit], [Service] or [Install]")
    exit errors > 0
}
