package failover

import (
	"testing"
	"time"
)

// Each step acts on the breaker at a time (seconds after the start) and
// checks what allow answers, or which transition an outcome makes.
func TestBreakerTable(t *testing.T) {
	type step struct {
		at     int    // seconds
		do     string // "allow", "fail", "ok", "release"
		probe  bool   // for fail/ok/release: the request was the probe
		wantOK bool   // allow: admitted
		wantPr bool   // allow: as the probe
		wantTr transition
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"opens after 3 and probes after the cooldown", []step{
			{at: 0, do: "fail"}, {at: 0, do: "fail"}, {at: 0, do: "fail", wantTr: opened},
			{at: 1, do: "allow"}, {at: 9, do: "allow"},
			{at: 10, do: "allow", wantOK: true, wantPr: true},
			{at: 10, do: "allow"}, // one probe at a time
			{at: 11, do: "ok", probe: true, wantTr: closedAgain},
			{at: 11, do: "allow", wantOK: true},
		}},
		{"a failed probe restarts the cooldown", []step{
			{at: 0, do: "fail"}, {at: 0, do: "fail"}, {at: 0, do: "fail", wantTr: opened},
			{at: 10, do: "allow", wantOK: true, wantPr: true},
			{at: 12, do: "fail", probe: true, wantTr: reopened},
			{at: 21, do: "allow"},
			{at: 22, do: "allow", wantOK: true, wantPr: true},
		}},
		{"a released probe lets the next one through", []step{
			{at: 0, do: "fail"}, {at: 0, do: "fail"}, {at: 0, do: "fail", wantTr: opened},
			{at: 10, do: "allow", wantOK: true, wantPr: true},
			{at: 10, do: "release", probe: true},
			{at: 10, do: "allow", wantOK: true, wantPr: true},
		}},
		{"success resets the run", []step{
			{at: 0, do: "fail"}, {at: 0, do: "fail"}, {at: 0, do: "ok"},
			{at: 0, do: "fail"}, {at: 0, do: "fail"},
			{at: 0, do: "allow", wantOK: true},
			{at: 0, do: "fail", wantTr: opened},
		}},
		{"a forced call's success closes an open breaker", []step{
			{at: 0, do: "fail"}, {at: 0, do: "fail"}, {at: 0, do: "fail", wantTr: opened},
			{at: 1, do: "fail"}, // forced, still open, cooldown unchanged
			{at: 2, do: "ok", wantTr: closedAgain},
			{at: 2, do: "allow", wantOK: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &breaker{threshold: 3, cooldown: 10 * time.Second}
			t0 := time.Unix(1_800_000_000, 0)
			for i, s := range tt.steps {
				now := t0.Add(time.Duration(s.at) * time.Second)
				switch s.do {
				case "allow":
					ok, pr := b.allow(now)
					if ok != s.wantOK || pr != s.wantPr {
						t.Fatalf("step %d: allow = %v, %v; want %v, %v", i, ok, pr, s.wantOK, s.wantPr)
					}
				case "fail":
					if tr := b.failure(now, s.probe); tr != s.wantTr {
						t.Fatalf("step %d: failure → %v, want %v", i, tr, s.wantTr)
					}
				case "ok":
					if tr := b.success(s.probe); tr != s.wantTr {
						t.Fatalf("step %d: success → %v, want %v", i, tr, s.wantTr)
					}
				case "release":
					b.release(s.probe)
				}
			}
		})
	}
}
