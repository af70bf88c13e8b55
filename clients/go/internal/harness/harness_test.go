package harness

import (
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	statefulroute "github.com/stateful-route/stateful-route/clients/go"
)

// Each command names errors by the kinds it lists, narrowest first; what none of them matches
// is Unexpected, also when it is wrapped.
func TestNameIsTheFirstKindListedThatMatches(t *testing.T) {
	pending := &statefulroute.PodPendingError{Namespace: "games", Service: "room"}
	unavailable := &statefulroute.StoreError{Op: "place", Unavailable: true}
	for _, c := range []struct {
		err   error
		kinds []Kind
		want  string
	}{
		{pending, Kinds, "PodPending"},
		{fmt.Errorf("wrapped: %w", pending), Kinds, "PodPending"},
		{pending, []Kind{NoAvailablePod, StoreUnavailable}, "NoAvailablePod"},
		{&statefulroute.NoAvailablePodError{Namespace: "games", Service: "room"}, Kinds, "NoAvailablePod"},
		{&statefulroute.InvalidInputError{Field: "uid", Problem: "empty"}, Kinds, "InvalidInput"},
		{&statefulroute.InvalidInputError{Field: "uid", Problem: "empty"}, []Kind{PodPending}, Unexpected},
		{unavailable, Kinds, "StoreUnavailable"},
		{&statefulroute.StoreError{Op: "place"}, Kinds, "StoreError"},
		{&statefulroute.StoreError{Op: "place"}, []Kind{StoreUnavailable}, Unexpected},
		{&statefulroute.LayoutTooNewError{Op: "place", Found: 99, Known: 2}, Kinds, "StoreError"},
		{errors.New("boom"), Kinds, Unexpected},
		{errors.New("boom"), nil, Unexpected},
	} {
		if got := Name(c.err, c.kinds...); got != c.want {
			t.Errorf("Name(%v, %v) = %q, want %q", c.err, c.kinds, got, c.want)
		}
	}
}

func TestFieldHasNoSpaces(t *testing.T) {
	if got := Field(errors.New("no available pod for games/room")); got != "no_available_pod_for_games/room" {
		t.Errorf("Field = %q", got)
	}
}

// Servers keeps one driver per service and pod, and keeps none it failed to make. Making a
// driver does not reach Redis, so no server is needed.
func TestServersMakesEachDriverOnce(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	servers := Env{Redis: rdb, Prefix: "srh", Namespace: "games"}.Servers(statefulroute.ServerOptions{})
	first, err := servers.Get("room", 2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := servers.Get("room", 2)
	if err != nil || again != first {
		t.Errorf("second Get: %p, %v; want %p", again, err, first)
	}
	for _, other := range []struct {
		service string
		pod     int
	}{{"room", 3}, {"lobby", 2}} {
		if d, err := servers.Get(other.service, other.pod); err != nil || d == first || d.PodIndex() != other.pod {
			t.Errorf("Get(%s, %d) = %p, %v", other.service, other.pod, d, err)
		}
	}
	if _, err := servers.Get("Not_A_Label", 0); !errors.Is(err, statefulroute.ErrInvalidInput) {
		t.Errorf("an invalid service: %v", err)
	}
	if len(servers.drivers) != 3 {
		t.Errorf("kept %d drivers, want 3", len(servers.drivers))
	}
}
