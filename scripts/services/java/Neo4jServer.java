// Neo4j Community as a standalone server for poirot's integration tests: an embedded
// DatabaseManagementService with the Bolt connector, started by scripts/services/neo4j.sh.
//
//   java -cp 'lib/*:classes' Neo4jServer HOME_DIR NEO4J_CONF
//
// NEO4J_CONF holds the server settings (listen addresses, memory, no HTTP, no usage
// reports); this class only adds authentication, from the environment:
//   NEO4J_AUTH=none            authentication off (any credentials are accepted)
//   otherwise (the default)    authentication on; the user NEO4J_USER (default neo4j)
//                              gets the password NEO4J_PASSWORD on every start, so a
//                              changed password takes effect on existing data too.
// Prints "neo4j ready" once the user is set and the default database answers, and runs
// until SIGTERM/SIGINT, when it shuts the databases down cleanly.
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

public final class Neo4jServer {
    private Neo4jServer() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Neo4jServer HOME_DIR NEO4J_CONF");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Path conf = Path.of(args[1]).toAbsolutePath();
        boolean auth = !"none".equalsIgnoreCase(env("NEO4J_AUTH", ""));
        String user = env("NEO4J_USER", "neo4j");
        String password = env("NEO4J_PASSWORD", "");
        if (auth) {
            if (!user.matches("[A-Za-z0-9_]+")) {
                fail("NEO4J_USER must be letters, digits and _ only, got '" + user + "'");
            }
            if (password.length() < 8) {
                fail("NEO4J_PASSWORD must have at least 8 characters (Neo4j's minimum), or set NEO4J_AUTH=none");
            }
        }

        DatabaseManagementService dbms;
        try {
            dbms = new DatabaseManagementServiceBuilder(home)
                    .loadPropertiesFromFile(conf)
                    .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                    .build();
        } catch (RuntimeException e) {
            e.printStackTrace();
            fail("could not start: " + rootMessage(e));
            return;
        }

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.out.println("neo4j: shutting down");
            try {
                dbms.shutdown();
            } finally {
                System.out.println("neo4j: stopped");
                System.out.flush();
                stopped.countDown();
            }
        }, "neo4j-shutdown"));

        try {
            if (auth) {
                setUser(dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME), user, password);
            }
            GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
            db.executeTransactionally("RETURN 1");
        } catch (RuntimeException e) {
            e.printStackTrace();
            fail("could not set up the database: " + rootMessage(e));
        }
        System.out.println("neo4j ready: auth " + (auth ? "on, user " + user : "off") + ", home " + home);
        System.out.flush();
        stopped.await();
    }

    // Creates the user if needed and sets its password, without a forced change at first login.
    private static void setUser(GraphDatabaseService system, String user, String password) {
        Map<String, Object> params = Map.of("pw", password);
        if (!"neo4j".equals(user)) {
            system.executeTransactionally(
                    "CREATE USER `" + user + "` IF NOT EXISTS SET PASSWORD $pw CHANGE NOT REQUIRED", params);
        }
        try {
            system.executeTransactionally(
                    "ALTER USER `" + user + "` SET PASSWORD $pw CHANGE NOT REQUIRED", params);
        } catch (RuntimeException e) {
            // Neo4j refuses to "change" a password to the one it already has: that is fine,
            // but the user must still not be asked to change it.
            if (!rootMessage(e).contains("cannot be the same")) {
                throw e;
            }
            system.executeTransactionally("ALTER USER `" + user + "` SET PASSWORD CHANGE NOT REQUIRED");
        }
    }

    private static String env(String name, String fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : value;
    }

    private static String rootMessage(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t.getMessage() != null) {
                if (sb.length() > 0) {
                    sb.append(": ");
                }
                sb.append(t.getMessage());
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return sb.toString();
    }

    private static void fail(String message) {
        System.err.println("neo4j: " + message);
        System.err.flush();
        System.exit(1);
    }
}
