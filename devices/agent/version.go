package agent

// Version is the agent's version, reported in Hello as its firmware.
var Version = "0.1.0"
