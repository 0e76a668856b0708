package client

// SetCrashHook installs a hook that ab calls at every step a crash may cut
// (for the power-loss test).
func SetCrashHook(ab *ABInstaller, f func(step string)) { ab.crash = f }
