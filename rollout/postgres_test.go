package rollout

import (
	"testing"

	"github.com/tufota/tufota/internal/testenv"
	"github.com/tufota/tufota/storage"
)

// postgresDB opens a fresh PostgreSQL database of the integration
// environment (make test); skipped under -short.
func postgresDB(t *testing.T) *storage.DB {
	t.Helper()
	url := testenv.Postgres(t)
	db, err := storage.OpenDB(t.Context(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestPostgres runs every service scenario on PostgreSQL: the same SQL must
// behave the same on both dialects (placeholders, ON CONFLICT, conditional
// inserts, optimistic revisions under concurrent writers).
func TestPostgres(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(*testing.T, dbOpener){
		"HealthyFleetCompletes":             testHealthyFleetCompletes,
		"FailingFleetPauses":                testFailingFleetPauses,
		"SilentDevicesCountAsFailures":      testSilentDevicesCountAsFailures,
		"DeferralHoldsTheTimeout":           testDeferralHoldsTheTimeout,
		"PinnedCohortNeverOffered":          testPinnedCohortNeverOffered,
		"DeadlineTurnsOptionalIntoRequired": testDeadlineTurnsOptionalIntoRequired,
		"DryRun":                            testDryRun,
		"OverlappingRolloutsByPriority":     testOverlappingRolloutsByPriority,
		"ApprovalGate":                      testApprovalGate,
		"BadInput":                          testBadInput,
		"StateErrors":                       testStateErrors,
		"CohortsAndOverlap":                 testCohortsAndOverlap,
		"Devices":                           testDevices,
		"JoinersFallIntoTheirBucket":        testJoinersFallIntoTheirBucket,
		"Eligibility":                       testEligibility,
		"WindowHoldsOffers":                 testWindowHoldsOffers,
		"ScheduledStart":                    testScheduledStart,
		"ResumeAcceptsPastFailures":         testResumeAcceptsPastFailures,
		"ReportStateMachine":                testReportStateMachine,
		"Rollback":                          testRollback,
		"RollbackToPrevious":                testRollbackToPrevious,
		"AssignDevice":                      testAssignDevice,
		"ConcurrentDevicesAndController":    testConcurrentDevicesAndController,
		"ConcurrentAuditedChanges":          testConcurrentAuditedChanges,
		"LaterWaveWaitsForItsOwnDevices":    testLaterWaveWaitsForItsOwnDevices,
		"DeviceIDCaseVariants":              testDeviceIDCaseVariants,
		"WaveDownloadBytes":                 testWaveDownloadBytes,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, postgresDB)
		})
	}
}

// postgresURL returns the URL of a fresh PostgreSQL database of the
// integration environment; skipped under -short.
func postgresURL(t *testing.T) string {
	t.Helper()
	return testenv.Postgres(t)
}
