package statefulroute

// The ServerDriver's Redis calls: one script call each (store/links.py's pod-side methods).

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// -- internals ------------------------------------------------------------------------------

// send is the SERVER_REPORT script: routing ("" keeps it) and load ("" keeps it).
func (s *ServerDriver) send(ctx context.Context, routing, load string) error {
	k := s.keys
	changed, err := within(ctx, s.opts.Timeout, "server report", func(ctx context.Context) (int64, error) {
		return scriptServerReport.Run(ctx, s.rdb, []string{k.pods, k.reports, k.version, k.config, k.available},
			s.pod, routing, load, k.channel, tableChangedPrefix(k.service), k.podLinks).Int64()
	})
	if err != nil {
		return err
	}
	if changed < 0 {
		return &NoAvailablePodError{Namespace: k.namespace, Service: k.service}
	}
	if changed > 0 {
		n, _ := strconv.Atoi(routing)
		s.log.Debug("routing state reported", "event", "routing_state", "state", RoutingState(n).String())
	}
	return nil
}

// persist is the SET_PERSISTENT script: (stored, the other pod, whether there is one).
func (s *ServerDriver) persist(ctx context.Context, uid string, onlyIfFree bool) (bool, int, bool, error) {
	if err := checkUID(uid); err != nil {
		return false, 0, false, err
	}
	k := s.keys
	flag := "0"
	if onlyIfFree {
		flag = "1"
	}
	reply, err := within(ctx, s.opts.Timeout, "link persistent", func(ctx context.Context) (any, error) {
		keys := append(append([]string{k.link(uid)}, k.route()...), k.phases)
		return scriptPersistent.Run(ctx, s.rdb, keys, k.podLinks, uid, s.pod, flag, k.channel,
			unlinkedMessage(k.service, uid)).Result()
	})
	if err == redis.Nil {
		return false, 0, false, &NoAvailablePodError{Namespace: k.namespace, Service: k.service}
	}
	if err != nil {
		return false, 0, false, err
	}
	items, ok := reply.([]any)
	if !ok || len(items) == 0 {
		return false, 0, false, corrupt("link persistent", "unexpected reply %v", reply)
	}
	stored, ok := items[0].(int64)
	if !ok {
		return false, 0, false, corrupt("link persistent", "unexpected reply %v", reply)
	}
	if len(items) < 2 || items[1] == nil {
		return stored == 1, 0, false, nil
	}
	other, ok := items[1].(int64)
	if !ok {
		return false, 0, false, corrupt("link persistent", "unexpected reply %v", reply)
	}
	return stored == 1, int(other), true, nil
}

// unlink is the REMOVE script (expected "" = any pod).
func (s *ServerDriver) unlink(ctx context.Context, uid, expected string, keep time.Duration) (bool, error) {
	if keep < 0 {
		return false, invalidf("keep_seconds", "must be at least 0, got %gs", keep.Seconds())
	}
	var keepMs int64
	if keep > 0 {
		keepMs = ms(keep)
	}
	k := s.keys
	_, err := within(ctx, s.opts.Timeout, "unlink", func(ctx context.Context) (any, error) {
		keys := append([]string{k.link(uid)}, k.route()...)
		return scriptRemove.Run(ctx, s.rdb, keys, k.podLinks, uid, expected, keepMs, k.channel,
			unlinkedMessage(k.service, uid)).Result()
	})
	if err == redis.Nil {
		return false, nil
	}
	return err == nil, err
}

// handOffReply is what the HAND_OFF script did for a user.
type handOffReply struct {
	linked   bool // the user was linked to this pod (false: nothing to do)
	pod      int  // where the link went; -1: it stayed (no other pod available)
	outdated bool // it stayed because only outdated pods take users (a rolling update)
}

func (s *ServerDriver) handOff(ctx context.Context, uid string) (handOffReply, error) {
	k := s.keys
	reply, err := within(ctx, s.opts.Timeout, "hand off", func(ctx context.Context) (any, error) {
		keys := append(append([]string{k.link(uid)}, k.route()...), k.phases)
		return scriptHandOff.Run(ctx, s.rdb, keys, k.podLinks, uid, s.pod, k.channel,
			unlinkedMessage(k.service, uid), ms(DefaultLinkTTL)).Result()
	})
	if err == redis.Nil {
		return handOffReply{}, nil
	}
	if err != nil {
		return handOffReply{}, err
	}
	items, ok := reply.([]any)
	if !ok || len(items) == 0 {
		return handOffReply{}, corrupt("hand off", "unexpected reply %v", reply)
	}
	pod, ok := items[0].(int64)
	if !ok {
		return handOffReply{}, corrupt("hand off", "unexpected reply %v", reply)
	}
	switch {
	case pod == -2:
		s.log.Warn("corrupt link deleted", "event", "corrupt_link_deleted", "uid", shown(uid, 80))
		return handOffReply{}, nil
	case pod < 0:
		return handOffReply{linked: true, pod: -1, outdated: pod == -3}, nil
	}
	return handOffReply{linked: true, pod: int(pod)}, nil
}

// linkedUsers calls each with every user linked to this pod (the LINKED script, page by page,
// each user once) until each returns false. Users a layout-1 release linked to the pod are
// moved into its shards first (Migrator.absorb), so a hand-off finds them.
func (s *ServerDriver) linkedUsers(ctx context.Context, each func(string) bool) error {
	if err := s.absorb(ctx); err != nil {
		return err
	}
	k := s.keys
	shards := k.podLinks + strconv.Itoa(s.pod)
	seen := map[string]bool{}
	cursor := int64(0)
	for {
		page, err := within(ctx, s.opts.Timeout, "linked users", func(ctx context.Context) ([]any, error) {
			return scriptLinked.Run(ctx, s.rdb, []string{shards, k.config}, k.podLinks, s.pod, cursor, batchSize).Slice()
		})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return corrupt("linked users", "empty reply")
		}
		next, ok := page[0].(int64)
		if !ok {
			return corrupt("linked users", "unexpected cursor %v", page[0])
		}
		for _, member := range page[1:] {
			uid, ok := member.(string)
			if !ok || seen[uid] { // a split may move a user to a shard not read yet
				continue
			}
			seen[uid] = true
			if !each(uid) {
				return nil
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// absorb moves the pod's layout-1 set (if any) into its shards (store/migration.py absorb).
func (s *ServerDriver) absorb(ctx context.Context) error {
	k := s.keys
	legacy := k.base + "p:" + strconv.Itoa(s.pod)
	exists, err := within(ctx, s.opts.Timeout, "absorb", func(ctx context.Context) (int64, error) {
		return s.rdb.Exists(ctx, legacy).Result()
	})
	if err != nil || exists == 0 {
		return err // the usual case, one read: nothing of layout 1 left
	}
	for {
		v, err := within(ctx, s.opts.Timeout, "absorb", func(ctx context.Context) (any, error) {
			keys := append([]string{legacy}, k.route()...)
			return scriptMigrateLinks.Run(ctx, s.rdb, keys, k.podLinks, k.links, s.pod, batchSize).Result()
		})
		if err != nil {
			return err
		}
		counts, err := ints("absorb", v, 4)
		if err != nil {
			return err
		}
		if counts[3] == 0 {
			return nil
		}
	}
}

// countLinked is how many users are linked to this pod now (the COUNT script).
func (s *ServerDriver) countLinked(ctx context.Context) (int, error) {
	k := s.keys
	n, err := within(ctx, s.opts.Timeout, "count links", func(ctx context.Context) (int64, error) {
		return scriptCount.Run(ctx, s.rdb, []string{k.podLinks + strconv.Itoa(s.pod), k.config}, k.podLinks, s.pod).Int64()
	})
	return int(n), err
}
