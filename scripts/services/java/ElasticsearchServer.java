// Elasticsearch 7.10 (OSS, Apache 2.0) as a standalone single-node server for poirot's
// integration tests, started by scripts/services/elasticsearch.sh on the jars of
// org.codelibs:elasticsearch-cluster-runner. The twin of OpenSearchServer.java.
//
//   java -cp 'lib/*:classes' ElasticsearchServer BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME
//
// HTTP on 127.0.0.1:HTTP_PORT; the transport layer on 127.0.0.1 at the first free port of
// TRANSPORT_PORTS (e.g. "19401-19500"). Single-node discovery, no disk watermarks, and a
// lowest-priority legacy template giving new indices no replicas (so they can turn green).
// Prints "elasticsearch ready" once the cluster is yellow, and runs until SIGTERM/SIGINT,
// when it closes the node cleanly.
import java.util.concurrent.CountDownLatch;
import org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner;
import org.elasticsearch.common.settings.Settings;

public final class ElasticsearchServer {
    private ElasticsearchServer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: ElasticsearchServer BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME");
            System.exit(2);
        }
        String basePath = args[0];
        int httpPort = Integer.parseInt(args[1]);
        String transportPorts = args[2];
        String clusterName = args[3];

        ElasticsearchClusterRunner runner = new ElasticsearchClusterRunner();
        // Take http.port as given: do not probe for a free one below 9300 (the runner's default).
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> {
            settings.put("node.name", clusterName + "-" + index);
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", String.valueOf(httpPort));
            settings.put("transport.port", transportPorts);
            settings.put("discovery.type", "single-node");
            settings.putList("node.roles", "master", "data", "ingest");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
            settings.put("action.auto_create_index", true);
            settings.put("bootstrap.memory_lock", false);
        });

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("elasticsearch: shutting down");
            try {
                runner.close();
            } catch (Exception e) {
                System.err.println("elasticsearch: close failed: " + e);
            } finally {
                System.out.println("elasticsearch: stopped");
                System.out.flush();
                stopped.countDown();
            }
        }, "elasticsearch-shutdown"));

        try {
            runner.build(ElasticsearchClusterRunner.newConfigs()
                    .basePath(basePath)
                    .clusterName(clusterName)
                    .numOfNode(1)
                    .baseHttpPort(httpPort - 1)
                    .printOnFailure());
            runner.client().admin().indices().preparePutTemplate("poirot-no-replicas")
                    .setPatterns(java.util.List.of("*"))
                    .setOrder(Integer.MIN_VALUE)
                    .setSettings(Settings.builder().put("index.number_of_replicas", 0))
                    .get();
            runner.ensureYellow();
        } catch (RuntimeException e) {
            e.printStackTrace();
            System.err.println("elasticsearch: could not start: " + e);
            System.err.flush();
            System.exit(1);
        }
        System.out.println("elasticsearch ready: http://127.0.0.1:" + httpPort + " cluster " + clusterName);
        System.out.flush();
        stopped.await();
    }
}
