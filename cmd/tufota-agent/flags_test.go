package main

import "testing"

// TestAgentFlagsFromEnvironment checks that TUFOTA_SERVER,
// TUFOTA_DEVICE_TOKEN and TUFOTA_TARGETS_URL still fill their flags (they
// are read after parsing, not used as the flags' printed defaults) and that
// a flag on the command line wins.
func TestAgentFlagsFromEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TUFOTA_SERVER": "https://env.example", "TUFOTA_DEVICE_TOKEN": "tft_env_secret", "TUFOTA_TARGETS_URL": "https://cdn.example"}
	base := []string{"--device-id", "d", "--root", "r", "--state-dir", "s", "--hardware", "h"}
	o, err := parseFlags(base, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.server != env["TUFOTA_SERVER"] || o.token != env["TUFOTA_DEVICE_TOKEN"] || o.targetsURL != env["TUFOTA_TARGETS_URL"] {
		t.Errorf("from the environment: server %q token %q targets %q", o.server, o.token, o.targetsURL)
	}
	o, err = parseFlags(append(base, "--token", "tft_flag", "--server", "https://flag.example"), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.token != "tft_flag" || o.server != "https://flag.example" {
		t.Errorf("flags over the environment: server %q token %q", o.server, o.token)
	}
}
