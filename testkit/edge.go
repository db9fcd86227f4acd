package testkit

// InternalRoutes are the app's routes for the engine's health checks and a
// scraper on the stack's network: the edge answers them 404.
var InternalRoutes = []string{"/metrics", "/healthz", "/readyz"}

// ScrapeMetrics is a bash command for a container on the stack's frontend
// network (nginx's has bash): it reads web:8080/metrics, as a scraper
// there would, and prints "scraped" when that holds tally's metrics.
const ScrapeMetrics = `exec 3<>/dev/tcp/web/8080 && printf 'GET /metrics HTTP/1.0\r\nHost: web\r\n\r\n' >&3 && grep -q '^tally_build_info' <&3 && echo scraped`
