import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.oplog.CollectionBackedOplog;
import de.bwaldvogel.mongo.oplog.Oplog;
import de.bwaldvogel.mongo.oplog.OplogPosition;
import io.netty.channel.Channel;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

/**
 * Runs mongo-java-server (in-memory backend, oplog enabled) for the test fixtures.
 *
 * <p>Usage: {@code java MongoServerMain [host] [port] [version] [wireVersion]}; port 0 (the
 * default) binds a free port. The version defaults to 5.0.0 with wire version 13, the numbers a
 * real MongoDB 5.0 reports: the library's own {@code ServerVersion.MONGO_5_0} reports wire
 * version 8, which current PyMongo rejects (it needs 9 or more). The reported version only
 * changes what {@code hello}/{@code buildInfo} answer, not how commands behave.
 *
 * <p>{@link StandInBackend} brings change streams closer to a real replica set's: replies carry
 * {@code cursor.postBatchResumeToken} and {@code operationTime} (PyMongo refuses a change stream
 * without them), and events are rebuilt from the oplog entry in MongoDB's shape ({@code ns},
 * {@code documentKey}, {@code replace} versus {@code update}, {@code updateDescription},
 * {@code fullDocument} with {@code updateLookup}). The {@code hello} command is answered like
 * {@code isMaster}.
 *
 * <p>Once listening it prints one line
 * {@code MONGODB READY host:port wireVersion=N version=X.Y.Z} on stdout, which the fixture waits
 * for. It stops on SIGTERM.
 */
public final class MongoServerMain {
    private MongoServerMain() {}

    public static void main(String[] args) throws InterruptedException {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        String versionText = args.length > 2 ? args[2] : "5.0.0";
        int wireVersion = args.length > 3 ? Integer.parseInt(args[3]) : 13;
        ReportedVersion version = new ReportedVersion(versionText, wireVersion);

        StandInBackend backend = new StandInBackend();
        backend.version(version);
        MongoServer server = new MongoServer(backend);
        server.enableOplog();
        server.bind(host, port);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow, "mongo-shutdown"));

        InetSocketAddress address = server.getLocalAddress();
        System.out.println("MONGODB READY " + address.getHostString() + ":" + address.getPort()
                + " wireVersion=" + version.getWireVersion()
                + " version=" + version.toVersionString());
        System.out.flush();
        new CountDownLatch(1).await();
    }

    /** The server version and wire version reported to clients. */
    private static final class ReportedVersion implements MongoVersion {
        private final List<Integer> versionArray = new ArrayList<>();
        private final int wireVersion;

        ReportedVersion(String version, int wireVersion) {
            for (String part : version.split("\\.")) {
                versionArray.add(Integer.parseInt(part));
            }
            while (versionArray.size() < 3) {
                versionArray.add(0);
            }
            this.wireVersion = wireVersion;
        }

        @Override
        public List<Integer> getVersionArray() {
            return versionArray;
        }

        @Override
        public int getWireVersion() {
            return wireVersion;
        }
    }

    /**
     * Memory backend whose change-stream replies look like a replica set's.
     *
     * <p>Post-batch resume token: for a non-empty batch it is the last event's {@code _id}. For an
     * empty batch it is the oplog clock read <em>before</em> the batch was computed: every event
     * up to that point was already in the oplog when the cursor scanned it, so resuming from the
     * token skips nothing. The oplog clock is private to the library, so it is read by
     * reflection; should that fail, the wall clock with increment 0 is used (a resume may then
     * repeat events from the same second, but never loses any).
     *
     * <p>Events: the library reports the update specification as {@code documentKey}, calls a
     * replacement an update and has no {@code ns}. Every oplog entry written is remembered by its
     * timestamp (through a recording proxy around the oplog collection), and each event of a
     * reply is rebuilt from its entry. Pipeline stages after {@code $changeStream} are still run
     * by the library on its own event shape, before this rewrite.
     */
    private static final class StandInBackend extends MemoryBackend {
        private final Map<Long, Boolean> changeStreamCursors = new ConcurrentHashMap<>();
        private final Map<Long, Document> oplogEntries = new ConcurrentHashMap<>();
        private volatile Object oplogClock;
        private volatile Method oplogClockNow;

        @Override
        @SuppressWarnings("unchecked")
        protected Oplog createOplog() {
            MongoDatabase local = resolveDatabase("local");
            MongoCollection<Document> collection =
                    (MongoCollection<Document>) local.resolveCollection("oplog.rs", false);
            if (collection == null) {
                collection = (MongoCollection<Document>) (MongoCollection<?>)
                        local.createCollectionOrThrowIfExists("oplog.rs");
            }
            return new CollectionBackedOplog(this, recording(collection), getCursorRegistry());
        }

        @SuppressWarnings("unchecked")
        private MongoCollection<Document> recording(MongoCollection<Document> target) {
            return (MongoCollection<Document>) Proxy.newProxyInstance(
                    MongoCollection.class.getClassLoader(),
                    new Class<?>[] {MongoCollection.class},
                    (proxy, method, args) -> {
                        Object[] actual = args;
                        if ("addDocument".equals(method.getName()) && args.length == 1
                                && args[0] instanceof Document entry) {
                            remember(entry);
                        } else if ("addDocuments".equals(method.getName()) && args.length == 1
                                && args[0] instanceof Stream<?> entries) {
                            actual = new Object[] {entries.peek(entry -> {
                                if (entry instanceof Document document) {
                                    remember(document);
                                }
                            })};
                        }
                        try {
                            return method.invoke(target, actual);
                        } catch (InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
        }

        private void remember(Document entry) {
            if (entry.get("ts") instanceof BsonTimestamp ts) {
                oplogEntries.put(ts.getValue(), entry);
            }
        }

        @Override
        public Document handleCommand(Channel channel, String database, String command,
                Document query) {
            if ("hello".equalsIgnoreCase(command)) {
                Document response = super.handleCommand(channel, database, "isMaster", query);
                response.put("isWritablePrimary", response.remove("ismaster"));
                return response;
            }
            Document stage = "aggregate".equalsIgnoreCase(command) ? changeStreamStage(query) : null;
            boolean aggregate = stage != null;
            long getMoreId = "getMore".equalsIgnoreCase(command) ? toLong(query.get("getMore")) : 0;
            boolean getMore = getMoreId != 0 && changeStreamCursors.containsKey(getMoreId);
            if (!aggregate && !getMore) {
                return super.handleCommand(channel, database, command, query);
            }
            boolean updateLookup = aggregate
                    ? "updateLookup".equals(stage.get("fullDocument"))
                    : changeStreamCursors.get(getMoreId);
            BsonTimestamp before = oplogNow();
            Document response = super.handleCommand(channel, database, command, query);
            if (!(response.get("cursor") instanceof Document cursor)) {
                return response;
            }
            long cursorId = toLong(cursor.get("id"));
            if (cursorId != 0) {
                changeStreamCursors.put(cursorId, updateLookup);
            } else if (getMore) {
                changeStreamCursors.remove(getMoreId);
            }
            String batchKey = aggregate ? "firstBatch" : "nextBatch";
            Object token = null;
            if (cursor.get(batchKey) instanceof List<?> events && !events.isEmpty()) {
                List<Object> rewritten = new ArrayList<>(events.size());
                for (Object event : events) {
                    rewritten.add(event instanceof Document document
                            ? rewrite(document, updateLookup) : event);
                }
                cursor.put(batchKey, rewritten);
                if (rewritten.get(rewritten.size() - 1) instanceof Document last) {
                    token = last.get("_id");
                }
            }
            if (token == null) {
                token = new Document("_data", new OplogPosition(before).toHexString());
            }
            cursor.put("postBatchResumeToken", token);
            response.put("operationTime", before);
            return response;
        }

        /** Rebuild one change event from its oplog entry; unknown entries are left alone. */
        private Document rewrite(Document event, boolean updateLookup) {
            if (!(event.get("clusterTime") instanceof BsonTimestamp ts)) {
                return event;
            }
            Document entry = oplogEntries.get(ts.getValue());
            if (entry == null || !(entry.get("ns") instanceof String ns)
                    || !(entry.get("o") instanceof Document o)) {
                return event;
            }
            int dot = ns.indexOf('.');
            if (dot < 0) {
                return event;
            }
            String db = ns.substring(0, dot);
            String coll = ns.substring(dot + 1);
            Document result = new Document();
            result.put("_id", event.get("_id"));
            switch (String.valueOf(entry.get("op"))) {
                case "i" -> {
                    result.put("operationType", "insert");
                    result.put("clusterTime", ts);
                    result.put("ns", namespace(db, coll));
                    result.put("documentKey", new Document("_id", o.get("_id")));
                    result.put("fullDocument", o);
                }
                case "d" -> {
                    result.put("operationType", "delete");
                    result.put("clusterTime", ts);
                    result.put("ns", namespace(db, coll));
                    result.put("documentKey", new Document("_id", o.get("_id")));
                }
                case "u" -> {
                    Object id = entry.get("o2") instanceof Document o2 ? o2.get("_id") : null;
                    boolean replace = o.keySet().stream().noneMatch(k -> k.startsWith("$"));
                    result.put("operationType", replace ? "replace" : "update");
                    result.put("clusterTime", ts);
                    result.put("ns", namespace(db, coll));
                    result.put("documentKey", new Document("_id", id));
                    Document current = null;
                    if (!replace || updateLookup) {
                        current = lookUp(db, coll, id);
                    }
                    if (replace) {
                        Document full = new Document("_id", id);
                        for (Map.Entry<String, Object> field : o.entrySet()) {
                            if (!"_id".equals(field.getKey())) {
                                full.put(field.getKey(), field.getValue());
                            }
                        }
                        result.put("fullDocument", full);
                    } else {
                        result.put("updateDescription", updateDescription(o, current));
                        if (updateLookup) {
                            result.put("fullDocument", current);
                        }
                    }
                }
                default -> {
                    return event;
                }
            }
            return result;
        }

        private static Document namespace(String db, String coll) {
            return new Document("db", db).append("coll", coll);
        }

        private Document lookUp(String db, String coll, Object id) {
            MongoCollection<?> collection = resolveDatabase(db).resolveCollection(coll, false);
            if (collection == null) {
                return null;
            }
            return collection.handleQueryAsStream(new Document("_id", id)).findFirst().orElse(null);
        }

        /**
         * {@code $set} values are reported as written; {@code $unset} fields as removed; fields of
         * other operators ({@code $inc}, {@code $push}, ...) with their current value.
         */
        private static Document updateDescription(Document update, Document current) {
            Document updated = new Document();
            List<Object> removed = new ArrayList<>();
            for (Map.Entry<String, Object> operator : update.entrySet()) {
                if (!(operator.getValue() instanceof Document fields)) {
                    continue;
                }
                for (Map.Entry<String, Object> field : fields.entrySet()) {
                    switch (operator.getKey()) {
                        case "$set", "$setOnInsert" -> updated.put(field.getKey(), field.getValue());
                        case "$unset" -> removed.add(field.getKey());
                        case "$rename" -> {
                            removed.add(field.getKey());
                            String target = String.valueOf(field.getValue());
                            updated.put(target, valueAt(current, target));
                        }
                        default -> updated.put(field.getKey(), valueAt(current, field.getKey()));
                    }
                }
            }
            return new Document("updatedFields", updated)
                    .append("removedFields", removed)
                    .append("truncatedArrays", new ArrayList<>());
        }

        private static Object valueAt(Document document, String dottedPath) {
            Object value = document;
            for (String part : dottedPath.split("\\.")) {
                if (!(value instanceof Document nested)) {
                    return null;
                }
                value = nested.get(part);
            }
            return value;
        }

        private static Document changeStreamStage(Document query) {
            if (query.get("pipeline") instanceof List<?> pipeline && !pipeline.isEmpty()
                    && pipeline.get(0) instanceof Document first
                    && first.get("$changeStream") instanceof Document stage) {
                return stage;
            }
            return null;
        }

        private static long toLong(Object value) {
            return value instanceof Number number ? number.longValue() : 0L;
        }

        private BsonTimestamp oplogNow() {
            try {
                if (oplogClockNow == null) {
                    Field field = CollectionBackedOplog.class.getDeclaredField("oplogClock");
                    field.setAccessible(true);
                    Object clock = field.get(oplog);
                    Method now = clock.getClass().getDeclaredMethod("now");
                    now.setAccessible(true);
                    oplogClock = clock;
                    oplogClockNow = now;
                }
                return (BsonTimestamp) oplogClockNow.invoke(oplogClock);
            } catch (ReflectiveOperationException | RuntimeException e) {
                return new BsonTimestamp(getClock().instant(), 0);
            }
        }
    }
}
