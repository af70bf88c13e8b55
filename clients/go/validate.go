package statefulroute

import (
	"regexp"
	"time"
	"unicode/utf8"
)

// The limits of core/validation.py, identical in both clients.
const (
	// MaxUIDBytes is the longest uid, in bytes of UTF-8.
	MaxUIDBytes = 256
	// MaxPodIndex is the highest pod ordinal.
	MaxPodIndex = 1_000_000
	maxInt      = 1<<31 - 1 // what Lua and Redis hashes hold exactly
)

var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	prefixRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// shown is value cut to n bytes for a message (Python's {value!r:.80}).
func shown(value string, n int) string {
	if len(value) > n {
		value = value[:n]
	}
	return value
}

// checkDNSLabel: a namespace or service is a DNS-1123 label (a-z, 0-9, '-', at most 63).
func checkDNSLabel(field, value string) error {
	if !dnsLabelRE.MatchString(value) {
		return invalidf(field, "must be a DNS-1123 label (a-z, 0-9, '-', at most 63), got %q", shown(value, 80))
	}
	return nil
}

// checkUID: a user id is 1 to MaxUIDBytes bytes of valid UTF-8.
func checkUID(uid string) error {
	if !utf8.ValidString(uid) {
		return invalid("uid", "must be encodable as UTF-8")
	}
	if len(uid) == 0 || len(uid) > MaxUIDBytes {
		return invalidf("uid", "must be 1 to %d bytes of UTF-8, got %d", MaxUIDBytes, len(uid))
	}
	return nil
}

func checkInt(field string, value, minimum, maximum int) error {
	if value < minimum || value > maximum {
		return invalidf(field, "must be between %d and %d, got %d", minimum, maximum, value)
	}
	return nil
}

// checkPod: a pod ordinal is an int from 0 to MaxPodIndex.
func checkPod(field string, pod int) error { return checkInt(field, pod, 0, MaxPodIndex) }

// checkPrefix: a key prefix is 1-32 of [A-Za-z0-9_.-] (no braces: it never changes a hash slot).
func checkPrefix(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return invalidf("prefix", "must be 1-32 of A-Z a-z 0-9 _ . -, got %q", shown(prefix, 40))
	}
	return nil
}

// checkDuration: a duration of at least minimum.
func checkDuration(field string, d, minimum time.Duration) error {
	if d < minimum {
		return invalidf(field, "must be at least %gs, got %gs", minimum.Seconds(), d.Seconds())
	}
	return nil
}
