package statefulroute

// routeKeys are the Redis keys of one route (namespace, service), as store/keys.py builds them:
// every one under "<prefix>:{<ns>/<svc>}:", so they share one hash slot.
type routeKeys struct {
	namespace, service string
	base               string
	links              string // + uid: a user's link
	podLinks           string // + pod: the pod's shards
	available          string
	pods               string
	reports            string
	config             string
	version            string
	instances          string
	phases             string
	channel            string
}

func newRouteKeys(prefix, namespace, service string) routeKeys {
	base := prefix + ":{" + namespace + "/" + service + "}:"
	return routeKeys{
		namespace: namespace,
		service:   service,
		base:      base,
		links:     base + "l:",
		podLinks:  base + "ps:",
		available: base + "avail",
		pods:      base + "pods",
		reports:   base + "srv",
		config:    base + "cfg",
		version:   base + "ver",
		instances: base + "ids",
		phases:    base + "phase",
		channel:   changesChannel(prefix, namespace),
	}
}

func (k routeKeys) link(uid string) string { return k.links + uid }

// route: the keys a script needs to read pods and re-score them (links.py's _route).
func (k routeKeys) route() []string { return []string{k.pods, k.reports, k.config, k.available} }

// servicesKey is the set of services with a route in a namespace (for GetLinkService).
func servicesKey(prefix, namespace string) string { return prefix + ":ns:" + namespace + ":services" }

// changesChannel is the namespace's change channel.
func changesChannel(prefix, namespace string) string { return prefix + ":changes:" + namespace }

// Messages on the change channel (store/changes.py).
func tableChangedPrefix(service string) string   { return "t|" + service }
func unlinkedMessage(service, uid string) string { return "u|" + service + "|" + uid }
