// Settings for the real `zwave-server` in doorwarden's tests. The network
// keys are throwaway test values (zwave-server refuses to start without
// them); the mock lock is not included securely, so they are never used.
// The cache directory comes from the test, so a restarted server finds the
// lock already interviewed.
module.exports = {
	securityKeys: {
		S0_Legacy: "0102030405060708090A0B0C0D0E0F10",
		S2_Unauthenticated: "1112131415161718191A1B1C1D1E1F20",
		S2_Authenticated: "2122232425262728292A2B2C2D2E2F30",
		S2_AccessControl: "3132333435363738393A3B3C3D3E3F40",
	},
	storage: {
		cacheDir: process.env.ZWAVE_CACHE_DIR || require("node:os").tmpdir(),
	},
	logConfig: { enabled: true, level: process.env.ZWAVE_LOG_LEVEL || "warn", logToFile: false },
	emitValueUpdateAfterSetValue: true,
	// No telemetry from a test run.
	enableStatistics: false,
};
