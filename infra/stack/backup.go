package stack

import (
	"fmt"
	"strconv"
	"time"
)

// Scheduled backups (tally:backupEvery): a service that takes a snapshot
// of Redis every so often into a volume of its own, kept across deploys
// and destroys as Redis's data is, and keeps the last tally:backupRetain
// (redis/backup.sh schedule). It reads the first Redis by name, a replica
// on a swarm with replicas as often as not, which serves the same data
// without the primary's fork.
const (
	backupRole = "backup"
	// The Redis image's own data directory, Redis's user's: a new volume
	// mounted there is that user's too.
	backupDir       = "/data"
	minBackupEvery  = 10 * time.Second
	defaultRetain   = 7
	maxBackupRetain = 1000
)

// backupEvery is tally:backupEvery, checked: off when unset.
func backupEvery(value string, bad func(key, value, want string)) time.Duration {
	if value == "" {
		return 0
	}
	d, err := time.ParseDuration(value)
	if err != nil || d < minBackupEvery || d%time.Second != 0 {
		bad("backupEvery", value, fmt.Sprintf("a whole number of seconds of at least %v, as 6h, 30m or 90s; unset for no scheduled backups", minBackupEvery))
		return 0
	}
	return d
}

// backupService is the scheduled backups' service, beside the first Redis.
func backupService(cfg Config, redis service, files Files) service {
	return service{
		role:     backupRole,
		image:    redis.image,           // redis-cli and redis-check-rdb
		replicas: 1, replace: stopFirst, // one writer of its volume
		placement: redis.placement,
		waitsFor:  []string{redis.role},
		user:      redis.user,
		command:   []string{"sh", "-c", files.RedisBackup, "redis-backup", "schedule"},
		env: []string{
			"REDIS_PASSWORD_FILE=" + passwordPath,
			"REDIS_HOST=" + redisAlias,
			"BACKUP_DIR=" + backupDir,
			"BACKUP_EVERY=" + strconv.Itoa(int(cfg.BackupEvery.Seconds())),
			"BACKUP_RETAIN=" + strconv.Itoa(cfg.BackupRetain),
		},
		// Healthy while the last snapshot was written.
		health:  []string{"CMD", "grep", "-q", "^backup: /", "/tmp/backup-status"},
		retries: 3,
		// redis-cli and redis-check-rdb stream the file; the snapshot is on
		// the volume, not in memory.
		memoryMB:  64,
		cpus:      1,
		pids:      16,
		stopGrace: 10, // a swarm's delete waits within it (replication.go)
		password:  true,
		dataDir:   backupDir,
		networks:  []attachment{{backend, ""}},
	}
}
