package stack

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Swarm is tally as services of a Docker Swarm, declared through its
// manager (tally:dockerHost): each service of the list as one Swarm
// service, placed, scaled and updated as its traits say.
//
// Services are reached by DNS round-robin (endpoint mode dnsrr), and
// published ports are published in host mode: Swarm's virtual IPs and its
// ingress routing mesh need IPVS in the nodes' kernels, and nginx wants
// every replica's address anyway, to balance and retry across them.
type Swarm struct {
	pulumi.ResourceState

	URL         pulumi.StringOutput    `pulumi:"url"`
	Services    pulumi.StringMapOutput `pulumi:"services"`
	RedisVolume pulumi.StringOutput    `pulumi:"redisVolume"`
	Networks    pulumi.StringMapOutput `pulumi:"networks"`
}

// NewSwarm declares svcs on the swarm whose manager cfg names.
func NewSwarm(ctx *pulumi.Context, name string, cfg Config, files Files, svcs []service, opts ...pulumi.ResourceOption) (*Swarm, error) {
	s := &Swarm{}
	b, err := newBase(ctx, "tally:swarm:Stack", name, s, cfg, "overlay", opts...)
	if err != nil {
		return nil, err
	}
	n, on, nets := b.n, b.on, b.nets

	// A Swarm secret cannot change, so a new password is a new secret: no
	// Name, and Pulumi names it with a random suffix, creating the new one
	// before the services move to it and deleting the old one after.
	var secrets swarmSecrets
	if slices.ContainsFunc(svcs, func(svc service) bool { return svc.password }) {
		secrets.password, err = docker.NewSecret(ctx, n.of("redis-password"), &docker.SecretArgs{
			Data:   pulumi.ToSecret(pulumi.String(base64.StdEncoding.EncodeToString([]byte(cfg.RedisPassword)))).(pulumi.StringOutput),
			Labels: secretLabels(n.labels("redis-password")),
		}, append(on, pulumi.DeleteBeforeReplace(false))...)
		if err != nil {
			return nil, err
		}
	}
	if slices.ContainsFunc(svcs, func(svc service) bool { return svc.shareKey }) {
		if secrets.shareKey, err = newShareKey(ctx, n, on); err != nil {
			return nil, err
		}
	}

	declared := map[string][]*docker.Service{}
	serviceNames := pulumi.StringMap{}
	built := map[string]pulumi.StringInput{} // by Dockerfile target: the certs services share one
	for _, svc := range svcs {
		image, ok := built[svc.image.target]
		if !ok || !svc.image.build {
			if image, err = swarmImage(ctx, n, svc, cfg, files, on); err != nil {
				return nil, err
			}
		}
		if svc.image.build {
			built[svc.image.target] = image
		}
		opts := append(slices.Clone(on), waitedFor(svc, declared))
		args := serviceArgs(n, svc, image, nets, secrets)
		readData(n, svcs, svc, args)
		if svc.reloads != nil {
			writer := releaseService(svc)
			wargs := serviceArgs(n, writer, image, nets, secrets)
			readData(n, svcs, writer, wargs)
			if err := releaseSecrets(ctx, n, writer.role, svc.reloads, wargs, on); err != nil {
				return nil, err
			}
			w, err := docker.NewService(ctx, n.of(writer.role), wargs, opts...)
			if err != nil {
				return nil, err
			}
			mountVolume(args, n.dataVolume(writer), releases)
			opts = append(opts, pulumi.DependsOn([]pulumi.Resource{w}))
		}
		service, err := docker.NewService(ctx, n.of(svc.role), args, opts...)
		if err != nil {
			return nil, err
		}
		declared[svc.role] = []*docker.Service{service}
		serviceNames[svc.role] = service.Name
	}

	redis, _ := byRole(svcs, redisRole) // checkServices makes sure of it
	s.URL = stackURL(cfg)
	s.Services = serviceNames.ToStringMapOutput()
	s.RedisVolume = pulumi.String(n.dataVolume(redis)).ToStringOutput()
	s.Networks = networkNames(nets)
	return s, ctx.RegisterResourceOutputs(s, s.outputs())
}

// outputs are the stack's outputs, by the names it exports them under.
func (s *Swarm) outputs() pulumi.Map {
	return pulumi.Map{"url": s.URL, "services": s.Services, "redisVolume": s.RedisVolume, "networks": s.Networks}
}

// swarmImage is svc's image as every node can pull it: built here and
// pushed to tally:registry, pinned by its digest, or as it is named.
func swarmImage(ctx *pulumi.Context, n names, svc service, cfg Config, files Files, on []pulumi.ResourceOption) (pulumi.StringInput, error) {
	switch {
	case svc.image.build:
		return builtImage(ctx, n, svc, cfg, files, on)
	case svc.image.pin:
		return pinned(ctx, n.of(svc.role, "image"), svc.image.ref, on)
	}
	return pulumi.String(svc.image.ref), nil
}

// pinned is image by its digest in the registry, which Swarm keeps as it
// is given. Given a tag, Swarm records tag@digest, which the provider reads
// back as a change on every up. The manager pulls the image to learn the
// digest; an image that is on the nodes but in no registry keeps its name.
func pinned(ctx *pulumi.Context, name, image string, on []pulumi.ResourceOption) (pulumi.StringOutput, error) {
	img, err := pulledImage(ctx, name, image, on)
	if err != nil {
		return pulumi.StringOutput{}, err
	}
	return img.RepoDigest.ApplyT(func(digest string) string {
		if digest == "" {
			return image
		}
		return digest
	}).(pulumi.StringOutput), nil
}

// serviceArgs is svc as a Swarm service, hardened as the containers of the
// docker target are (containerArgs) but for no-new-privileges, which the
// provider (v4.10.0) has no setting for on a service. The password, when svc
// reads the password, is mounted at passwordPath (and the share key at
// shareKeyPath).
//
// Durations are written as the provider reads them back ("10s", not
// "10000ms"), networks by ID, and every setting the daemon would otherwise
// fill in is set: anything read back that differs from the program is a
// diff on every up.
func serviceArgs(n names, svc service, image pulumi.StringInput, nets map[string]*docker.Network, secrets swarmSecrets) *docker.ServiceArgs {
	// A writable /tmp in memory, bounded by the memory limit: the provider
	// panics on any tmpfs option (v4.10.0 reads their numbers as int64).
	// Redis' data on a volume of the node it is placed on, which Swarm
	// creates on first use and never removes.
	mounts := docker.ServiceTaskSpecContainerSpecMountArray{docker.ServiceTaskSpecContainerSpecMountArgs{
		Type: pulumi.String("tmpfs"), Target: pulumi.String(tmpDir),
	}}
	if svc.dataDir != "" {
		mounts = append(mounts, docker.ServiceTaskSpecContainerSpecMountArgs{
			Type: pulumi.String("volume"), Source: pulumi.String(n.dataVolume(svc)), Target: pulumi.String(svc.dataDir),
		})
	}
	env := pulumi.StringMap{}
	for _, kv := range svc.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = pulumi.String(v)
	}
	spec := &docker.ServiceTaskSpecContainerSpecArgs{
		Image:    image,
		Env:      env,
		ReadOnly: pulumi.Bool(true),
		CapDrops: pulumi.StringArray{pulumi.String(dropAll)},
		Mounts:   mounts,
		Healthcheck: docker.ServiceTaskSpecContainerSpecHealthcheckArgs{
			Tests:       pulumi.ToStringArray(svc.health),
			Interval:    pulumi.String(healthInterval),
			Timeout:     pulumi.String(healthTimeout),
			Retries:     pulumi.Int(svc.retries),
			StartPeriod: pulumi.String(healthStartPeriod),
		},
		StopGracePeriod: pulumi.String(fmt.Sprintf("%ds", svc.stopGrace)),
		Labels:          serviceContainerLabels(taskLabels(n, svc)),
	}
	if svc.user != "" {
		spec.User = pulumi.String(svc.user)
	}
	if svc.entrypoint != nil {
		spec.Commands = pulumi.ToStringArray(svc.entrypoint)
	}
	if svc.command != nil {
		spec.Args = pulumi.ToStringArray(svc.command)
	}
	if svc.stopSignal != "" {
		spec.StopSignal = pulumi.String(svc.stopSignal)
	}
	if svc.stackDNS {
		spec.DnsConfig = docker.ServiceTaskSpecContainerSpecDnsConfigArgs{
			Nameservers: pulumi.ToStringArray(noUpstreamDNS), Options: pulumi.ToStringArray(dnsOptions),
		}
	}
	var mounted docker.ServiceTaskSpecContainerSpecSecretArray
	for _, m := range []struct {
		reads  bool
		secret *docker.Secret
		path   string
	}{{svc.password, secrets.password, passwordPath}, {svc.shareKey, secrets.shareKey, shareKeyPath}} {
		if m.reads {
			mounted = append(mounted, docker.ServiceTaskSpecContainerSpecSecretArgs{
				SecretId: m.secret.ID(), SecretName: m.secret.Name, FileName: pulumi.String(m.path),
				FileUid: pulumi.String("0"), FileGid: pulumi.String("0"), FileMode: pulumi.Int(0o444),
			})
		}
	}
	if mounted != nil {
		spec.Secrets = mounted
	}
	var attach docker.ServiceTaskSpecNetworksAdvancedArray
	for _, a := range svc.networks {
		net := docker.ServiceTaskSpecNetworksAdvancedArgs{Name: nets[a.network].ID()}
		if a.alias != "" {
			net.Aliases = pulumi.StringArray{pulumi.String(a.alias)}
		}
		attach = append(attach, net)
	}
	task := &docker.ServiceTaskSpecArgs{
		ContainerSpec:     spec,
		NetworksAdvanceds: attach,
		Resources: docker.ServiceTaskSpecResourcesArgs{
			Limits: docker.ServiceTaskSpecResourcesLimitsArgs{MemoryBytes: pulumi.Int(svc.memoryMB << 20), NanoCpus: pulumi.Int(svc.cpus * 1e9)},
		},
		RestartPolicy: docker.ServiceTaskSpecRestartPolicyArgs{
			Condition: pulumi.String("any"), Delay: pulumi.String("1s"), MaxAttempts: pulumi.Int(0), Window: pulumi.String("0s"),
		},
		LogDriver: docker.ServiceTaskSpecLogDriverArgs{
			Name:    pulumi.String(logDriver),
			Options: logOptions(),
		},
	}
	if svc.placement != "" {
		task.Placement = docker.ServiceTaskSpecPlacementArgs{Constraints: pulumi.StringArray{pulumi.String(svc.placement)}}
	}
	endpoint := docker.ServiceEndpointSpecArgs{Mode: pulumi.String("dnsrr")}
	var published docker.ServiceEndpointSpecPortArray
	for _, p := range svc.publish {
		published = append(published, docker.ServiceEndpointSpecPortArgs{
			TargetPort: pulumi.Int(p.container), PublishedPort: pulumi.Int(p.host),
			PublishMode: pulumi.String("host"), Protocol: pulumi.String("tcp"),
		})
	}
	if published != nil {
		endpoint.Ports = published
	}
	mode := docker.ServiceModeArgs{Global: pulumi.Bool(true)}
	if svc.replicas != everyNode {
		mode = docker.ServiceModeArgs{Replicated: docker.ServiceModeReplicatedArgs{Replicas: pulumi.Int(svc.replicas)}}
	}
	args := &docker.ServiceArgs{
		Name:         pulumi.String(n.of(svc.role)),
		Labels:       serviceLabels(n.labels(svc.role)),
		TaskSpec:     task,
		Mode:         mode,
		EndpointSpec: endpoint,
		// One task at a time, in svc's order; a task that fails its health
		// check rolls the update back (start-first: the old task still
		// serves meanwhile).
		UpdateConfig:   updateConfig(swarmOrder(svc.replace)),
		RollbackConfig: rollbackConfig(swarmOrder(svc.replace)),
	}
	if svc.replicas != everyNode {
		// `up` returns once every task runs and is healthy, or fails. The
		// provider cannot wait for a global service; Swarm still rolls a
		// failing update of one back by itself.
		args.ConvergeConfig = docker.ServiceConvergeConfigArgs{Delay: pulumi.String("1s"), Timeout: pulumi.String("3m")}
	}
	return args
}

// taskLabels are the labels of svc's containers. Swarm (Docker 20.10, seen
// in the lab) updates a service whose published ports alone changed
// without replacing its tasks, so a port added (HTTPS's) is never
// published: the ports are named in a label too, which makes the change
// one of the tasks. Only where there are several: a stack that publishes
// HTTP alone, as every one did before HTTPS, keeps its tasks.
func taskLabels(n names, svc service) map[string]string {
	labels := n.labels(svc.role)
	if len(svc.publish) > 1 {
		var ports []string
		for _, p := range svc.publish {
			ports = append(ports, fmt.Sprintf("%d:%d", p.host, p.container))
		}
		labels["tally.published"] = strings.Join(ports, " ")
	}
	return labels
}

// releaseService is the release step of svc's reloads on a swarm: a task
// on every node svc runs on, which writes the release from its environment
// into its data volume, the node's, and runs the step (nginx/release.sh);
// svc's tasks there read that volume. A config change updates this service
// alone, and svc's tasks reload in place.
func releaseService(svc service) service {
	r := svc.reloads
	names := slices.Sorted(maps.Keys(r.files))
	env := append(slices.Clone(svc.env), "TALLY_RELEASE_FILES="+strings.Join(names, " "))
	for _, name := range names {
		env = append(env, "TALLY_FILE_"+envName(name)+"="+r.files[name])
	}
	if len(r.secrets) > 0 {
		env = append(env, "TALLY_RELEASE_SECRETS="+strings.Join(slices.Sorted(maps.Keys(r.secrets)), " "))
	}
	id := r.id()
	return service{
		role:       svc.role + "-conf",
		image:      svc.image,
		replicas:   everyNode,
		placement:  svc.placement,
		replace:    stopFirst,
		waitsFor:   svc.waitsFor,
		readsData:  svc.readsData, // nginx -t reads the certificate too
		user:       svc.user,
		entrypoint: []string{"sh", "-c", r.release, "release", id},
		env:        env,
		// Healthy once this release is the node's current one.
		health:   []string{"CMD", "grep", "-qx", id, releases + "/current"},
		retries:  3,
		memoryMB: releaseMemoryMB,
		cpus:     1,
		pids:     16,
		dataDir:  releases,
		networks: svc.networks, // where svc runs: nginx -t resolves its upstreams
	}
}

// releaseSecrets gives a release step on a swarm the release's secret files
// as Swarm secrets, at secretsDir/<envName>, from where it copies them into
// the release (nginx/release.sh): never in its environment, where `docker
// service inspect` would show them. A Swarm secret cannot change, so a new
// content is a new secret (no Name: Pulumi adds a random suffix), made
// before the release step moves to it.
func releaseSecrets(ctx *pulumi.Context, n names, role string, r *reloads, args *docker.ServiceArgs, on []pulumi.ResourceOption) error {
	if len(r.secrets) == 0 {
		return nil
	}
	spec := args.TaskSpec.(*docker.ServiceTaskSpecArgs).ContainerSpec.(*docker.ServiceTaskSpecContainerSpecArgs)
	mounts, _ := spec.Secrets.(docker.ServiceTaskSpecContainerSpecSecretArray) // nil for none
	for _, name := range slices.Sorted(maps.Keys(r.secrets)) {
		s, err := docker.NewSecret(ctx, n.of(role, envName(name)), &docker.SecretArgs{
			Data:   r.secrets[name].Output().ApplyT(func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }).(pulumi.StringOutput),
			Labels: secretLabels(n.labels(role)),
		}, append(on, pulumi.DeleteBeforeReplace(false))...)
		if err != nil {
			return err
		}
		mounts = append(mounts, docker.ServiceTaskSpecContainerSpecSecretArgs{
			SecretId: s.ID(), SecretName: s.Name, FileName: pulumi.String(secretsDir + "/" + envName(name)),
			FileUid: pulumi.String("0"), FileGid: pulumi.String("0"), FileMode: pulumi.Int(0o444),
		})
	}
	spec.Secrets = mounts
	return nil
}

// envName is a file name as the release step reads it from the
// environment: nginx.conf in TALLY_FILE_nginx_conf.
func envName(file string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, file)
}

// mountVolume mounts the node's volume read-only at target in a service's
// tasks.
func mountVolume(args *docker.ServiceArgs, volume, target string) {
	spec := args.TaskSpec.(*docker.ServiceTaskSpecArgs).ContainerSpec.(*docker.ServiceTaskSpecContainerSpecArgs)
	spec.Mounts = append(spec.Mounts.(docker.ServiceTaskSpecContainerSpecMountArray), docker.ServiceTaskSpecContainerSpecMountArgs{
		Type: pulumi.String("volume"), Source: pulumi.String(volume), Target: pulumi.String(target), ReadOnly: pulumi.Bool(true),
	})
}

// readData mounts, in svc's tasks, the volume of the service whose data it
// reads (nginx, the certificate the certs copy keeps on its node), where
// that service keeps it.
func readData(n names, svcs []service, svc service, args *docker.ServiceArgs) {
	if svc.readsData == "" {
		return
	}
	owner, _ := byRole(svcs, svc.readsData) // checkServices makes sure of it
	mountVolume(args, n.dataVolume(owner), owner.dataDir)
}

// swarmSecrets are the stack's Swarm secrets a service may read.
type swarmSecrets struct{ password, shareKey *docker.Secret }

// newShareKey is the key sealing the certificate the certs service shares
// with its copies: random, made on the first deploy and kept (a later
// run's random is ignored), as no one needs to know or set it.
func newShareKey(ctx *pulumi.Context, n names, on []pulumi.ResourceOption) (*docker.Secret, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return docker.NewSecret(ctx, n.of("certs-share-key"), &docker.SecretArgs{
		Data:   pulumi.ToSecret(pulumi.String(base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(key))))).(pulumi.StringOutput),
		Labels: secretLabels(n.labels("certs-share-key")),
	}, append(on, pulumi.DeleteBeforeReplace(false), pulumi.IgnoreChanges([]string{"data"}))...)
}

// swarmOrder is how a swarm replaces a task of a service replaced in
// order: a handoff needs a network namespace shared between tasks, which
// services cannot have, so the old task stops first.
func swarmOrder(o order) string {
	if o == handoff {
		return string(stopFirst)
	}
	return string(o)
}

// updateConfig rolls one task at a time in order (start-first or
// stop-first), watches each for 5s once it is healthy, and rolls back when
// one fails. A task that never gets healthy fails before that: its health
// check gives up after the start period and three tries.
func updateConfig(order string) docker.ServiceUpdateConfigArgs {
	return docker.ServiceUpdateConfigArgs{
		Parallelism: pulumi.Int(1), Order: pulumi.String(order), Delay: pulumi.String("0s"),
		FailureAction: pulumi.String("rollback"), Monitor: pulumi.String("5s"), MaxFailureRatio: pulumi.String("0.0"), // as read back
	}
}

func rollbackConfig(order string) docker.ServiceRollbackConfigArgs {
	return docker.ServiceRollbackConfigArgs{
		Parallelism: pulumi.Int(1), Order: pulumi.String(order), Delay: pulumi.String("0s"),
		FailureAction: pulumi.String("pause"), Monitor: pulumi.String("5s"), MaxFailureRatio: pulumi.String("0.0"), // as read back
	}
}

func serviceLabels(m map[string]string) docker.ServiceLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.ServiceLabelInput {
		return docker.ServiceLabelArgs{Label: k, Value: v}
	})
}

func serviceContainerLabels(m map[string]string) docker.ServiceTaskSpecContainerSpecLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.ServiceTaskSpecContainerSpecLabelInput {
		return docker.ServiceTaskSpecContainerSpecLabelArgs{Label: k, Value: v}
	})
}

func secretLabels(m map[string]string) docker.SecretLabelArray {
	return labelList(m, func(k, v pulumi.String) docker.SecretLabelInput {
		return docker.SecretLabelArgs{Label: k, Value: v}
	})
}
